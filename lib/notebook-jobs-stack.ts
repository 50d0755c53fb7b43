/**
 * The notebook-jobs deployment: API Gateway -> Lambda handlers -> DynamoDB job records and ECS
 * Fargate runner tasks, notebooks in S3, logs in CloudWatch, reconciliation by ECS events and a
 * one-minute sweep, a dashboard and alarms. Settings come from StackConfig (CDK context); every
 * construct lives in its own file under lib/.
 */
import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { EventBus } from 'aws-cdk-lib/aws-events';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { CfnEventInvokeConfig, CfnFunction } from 'aws-cdk-lib/aws-lambda';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { ARTIFACT_PREFIXES, ArtifactBucket } from './artifact-bucket.ts';
import { HouseFunction, type HandlerName, type HouseFunctionProps } from './house-function.ts';
import { JobMetrics } from './job-metrics.ts';
import { JobTable } from './job-table.ts';
import { acknowledge, acknowledgeWildcardResources } from './nag-acknowledgements.ts';
import { Network } from './network.ts';
import { Observability } from './observability.ts';
import { createTaskEventsDeadLetterQueue, Reconciliation } from './reconciliation.ts';
import { NotebookJobsApi } from './rest-api.ts';
import { RunnerTask } from './runner-task.ts';
import { WarmRunners } from './warm-runners.ts';
import type { StackConfig } from './stack-config.ts';
import { ALLOWED_ORIGINS, OAUTH_SETTINGS, SETTINGS } from '../lambda/core/settings.ts';
import { CognitoAuthorization } from './auth.ts';

export interface NotebookJobsStackProps extends StackProps {
  readonly config: StackConfig;
}

/** Partition keys of API token items, as an IAM pattern (the authorizer may read nothing else). */
export const TOKEN_KEY_PATTERN = 'TOKEN#*';

/** Timeout and memory of each handler. api and mcp stay under API Gateway's 29 s integration limit. */
const HANDLERS: Record<HandlerName, { timeout: Duration; memorySize: number; description: string }> = {
  api: { timeout: Duration.seconds(29), memorySize: 512, description: 'notebook-jobs REST API' },
  mcp: { timeout: Duration.seconds(29), memorySize: 512, description: 'notebook-jobs MCP endpoint' },
  'task-events': {
    timeout: Duration.seconds(60),
    memorySize: 256,
    description: 'notebook-jobs: reconcile a job when its ECS task stops',
  },
  sweeper: {
    timeout: Duration.seconds(60),
    memorySize: 256,
    description: 'notebook-jobs: deadlines, slot leaks, queued launches, vanished tasks (every minute)',
  },
  authorizer: {
    timeout: Duration.seconds(5),
    memorySize: 256,
    description: 'notebook-jobs: bearer token authorizer',
  },
};

/** The whole deployment. */
export class NotebookJobsStack extends Stack {
  readonly api: NotebookJobsApi;
  readonly functions: Record<HandlerName, HouseFunction>;
  readonly runner: RunnerTask;
  readonly table: JobTable;
  readonly artifacts: ArtifactBucket;
  /** The Cognito user pool, when `oauth` is `cognito`. */
  readonly cognito: CognitoAuthorization | undefined;

  constructor(scope: Construct, id: string, props: NotebookJobsStackProps) {
    super(scope, id, props);
    const { config } = props;
    const removalPolicy = config.removalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;
    // Logs follow their retention; deleting the stack deletes what is left of them.
    const logs = { logRetention: config.logRetentionDays, logRemovalPolicy: RemovalPolicy.DESTROY };

    this.table = new JobTable(this, 'Jobs', { removalPolicy });
    this.artifacts = new ArtifactBucket(this, 'Artifacts', {
      retentionDays: config.retentionDays,
      removalPolicy,
    });
    const eventBus = EventBus.fromEventBusName(this, 'DefaultBus', 'default');
    const cursorSecret = new Secret(this, 'CursorSecret', {
      description: 'notebook-jobs: HMAC key that signs list and log paging cursors',
      generateSecretString: { passwordLength: 64, excludePunctuation: true },
      removalPolicy,
    });
    acknowledge(
      cursorSecret,
      'SMG4',
      'The key only signs paging cursors; rotating it merely invalidates cursors in flight (callers restart from page 1), so it is rotated by hand when needed.',
    );
    const network = new Network(this, 'Network', {
      vpcId: config.vpcId,
      egress: config.egress,
      ...logs,
    });
    this.runner = new RunnerTask(this, 'Runner', {
      network,
      table: this.table.table,
      bucket: this.artifacts.bucket,
      eventBus,
      cpu: config.taskCpu,
      memoryMiB: config.taskMemory,
      architecture: config.taskArchitecture,
      useFargateSpot: config.useFargateSpot,
      retentionDays: config.retentionDays,
      ...logs,
    });

    const deadLetterQueue = createTaskEventsDeadLetterQueue(this, 'TaskEventsDeadLetters');
    const make = (name: HandlerName, id: string, extra: Partial<HouseFunctionProps> = {}) =>
      new HouseFunction(this, id, { handler: name, ...HANDLERS[name], ...logs, ...extra });
    this.functions = {
      api: make('api', 'ApiHandler'),
      mcp: make('mcp', 'McpHandler'),
      'task-events': make('task-events', 'TaskEventsHandler', { deadLetterQueue }),
      sweeper: make('sweeper', 'SweeperHandler', { retryAttempts: 0 }),
      authorizer: make('authorizer', 'AuthorizerHandler'),
    };
    limitToOneSweep(this.functions.sweeper);
    if (config.tracing) for (const fn of Object.values(this.functions)) enableTracing(fn);
    const services = [
      this.functions.api,
      this.functions.mcp,
      this.functions['task-events'],
      this.functions.sweeper,
    ];
    const warmRunners =
      config.warmRunners > 0
        ? new WarmRunners(this, 'WarmRunners', {
            runner: this.runner,
            network,
            table: this.table.table,
            count: config.warmRunners,
            useFargateSpot: config.useFargateSpot,
          })
        : undefined;
    for (const fn of services) {
      warmRunners?.bindDispatcher(fn);
      fn.bindTable(this.table.table)
        .bindBucket(this.artifacts.bucket, Object.values(ARTIFACT_PREFIXES))
        .bindSecret(cursorSecret, 'NOTEBOOK_JOBS_CURSOR_SECRET_ARN')
        .bindEventBus(eventBus)
        .addEnvironment(SETTINGS.maxConcurrentJobs.variable, String(config.maxConcurrentJobs))
        .addEnvironment(SETTINGS.retentionDays.variable, String(config.retentionDays));
      this.runner.bindLauncher(fn);
    }
    // Only the request handlers read caller-named notebooks; the runner reads the stored copy.
    for (const fn of [this.functions.api, this.functions.mcp]) fn.bindTenantSources(config.tenantSources);
    this.functions.mcp.addEnvironment(ALLOWED_ORIGINS.variable, config.mcpAllowedOrigins.join(','));
    // The authorizer reads token items only (lambda/adapters/dynamodb/token-store.ts: TOKEN#<sha256>).
    this.functions.authorizer.bindTableItems(this.table.table, [TOKEN_KEY_PATTERN]);

    this.api = new NotebookJobsApi(this, 'Api', {
      api: this.functions.api,
      mcp: this.functions.mcp,
      authorizer: this.functions.authorizer,
      throttleRate: config.throttleRate,
      throttleBurst: config.throttleBurst,
      mcpAllowedOrigins: config.mcpAllowedOrigins,
      webAclArn: config.webAclArn,
      tracing: config.tracing,
      ...logs,
    });
    // OAuth: the resource is the API's /mcp URL unless a custom domain's is configured.
    const audience = config.oauth?.audience ?? `${this.api.stageUrl()}/mcp`;
    this.cognito =
      config.oauth?.kind === 'cognito'
        ? new CognitoAuthorization(this, 'Auth', {
            domainPrefix: config.oauth.domainPrefix,
            callbackUrls: config.oauth.callbackUrls,
            resourceUrl: audience,
            removalPolicy,
          })
        : undefined;
    // Cognito: tenant = sub; a token without `aud` must come from the stack's app client.
    const oauth =
      config.oauth?.kind === 'external'
        ? config.oauth
        : this.cognito
          ? {
              issuer: this.cognito.issuer,
              tenantClaim: 'sub',
              scopePrefix: `${audience}/`,
              clientIds: [this.cognito.client.userPoolClientId],
            }
          : undefined;
    if (oauth) {
      this.api.enableOAuth({ issuer: oauth.issuer, audience, scopePrefix: oauth.scopePrefix });
      this.functions.authorizer
        .addEnvironment(OAUTH_SETTINGS.issuer.variable, oauth.issuer)
        .addEnvironment(OAUTH_SETTINGS.audience.variable, audience)
        .addEnvironment(OAUTH_SETTINGS.tenantClaim.variable, oauth.tenantClaim)
        .addEnvironment(OAUTH_SETTINGS.scopePrefix.variable, oauth.scopePrefix)
        .addEnvironment(OAUTH_SETTINGS.clientIds.variable, oauth.clientIds.join(','));
    }
    new Reconciliation(this, 'Reconciliation', {
      cluster: this.runner.cluster,
      taskEvents: this.functions['task-events'],
      sweeper: this.functions.sweeper,
      deadLetterQueue,
    });
    new JobMetrics(this, 'JobMetrics', logs);
    const observability = new Observability(this, 'Observability', {
      functions: Object.values(this.functions),
      authorizer: this.functions.authorizer,
      sweeper: this.functions.sweeper,
      restApi: this.api.restApi,
      deadLetterQueue,
      maxConcurrentJobs: config.maxConcurrentJobs,
      alarmEmail: config.alarmEmail,
      warmRunners: config.warmRunners,
    });

    new CfnOutput(this, 'ApiUrl', { description: 'REST API base URL', value: this.api.restApi.url });
    new CfnOutput(this, 'McpUrl', { description: 'MCP endpoint (streamable HTTP)', value: this.api.mcpUrl });
    new CfnOutput(this, 'BucketName', { value: this.artifacts.bucket.bucketName });
    if (this.cognito) {
      new CfnOutput(this, 'OAuthIssuer', {
        description: 'Cognito user pool (OAuth issuer)',
        value: this.cognito.issuer,
      });
      new CfnOutput(this, 'OAuthClientId', {
        description: 'OAuth client id for MCP clients (claude.ai, ChatGPT: "client ID", no secret)',
        value: this.cognito.client.userPoolClientId,
      });
      new CfnOutput(this, 'OAuthLoginDomain', {
        description: 'Cognito managed login',
        value: this.cognito.domainUrl,
      });
    }
    new CfnOutput(this, 'RunnerRoleArn', {
      description: "The principal tenants' notebook roles trust (docs/deploy.md)",
      value: this.runner.runnerRole.roleArn,
    });
    new CfnOutput(this, 'TableName', { value: this.table.table.tableName });
    new CfnOutput(this, 'DashboardUrl', {
      value: `https://${this.region}.console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards:name=${observability.dashboard.dashboardName}`,
    });
  }
}

/**
 * One sweep at a time: reserved concurrency 1, so a sweep that runs past the next minute's schedule
 * is not overlapped by another one working on the same jobs. The schedule's invocation that finds
 * it busy is throttled; Lambda would keep such an event for up to 6 hours and run it late, so it is
 * dropped after a minute instead (the next scheduled sweep does the same work).
 */
function limitToOneSweep(sweeper: HouseFunction): void {
  (sweeper.function.node.defaultChild as CfnFunction).reservedConcurrentExecutions = 1;
  const asyncConfig = sweeper.function.node.tryFindChild('EventInvokeConfig')?.node.defaultChild;
  if (!(asyncConfig instanceof CfnEventInvokeConfig)) {
    throw new Error('the sweeper has no asynchronous invocation settings (HouseFunction retryAttempts)');
  }
  asyncConfig.maximumEventAgeInSeconds = 60;
}

/**
 * X-Ray active tracing of a function (context tracing): Lambda records a segment per invocation
 * (initialization, handler time, the function's own errors). Calls to AWS services show up only as
 * time inside the handler, since the AWS SDK clients are not instrumented.
 */
function enableTracing(fn: HouseFunction): void {
  (fn.function.node.defaultChild as CfnFunction).tracingConfig = { mode: 'Active' };
  fn.addToRolePolicy(
    new PolicyStatement({ actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'], resources: ['*'] }),
  );
  acknowledgeWildcardResources(
    fn,
    ['*'],
    'X-Ray PutTraceSegments and PutTelemetryRecords have no resource-level permissions; this is what Lambda active tracing needs.',
  );
}
