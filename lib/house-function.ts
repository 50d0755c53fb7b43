/**
 * The house Lambda construct: every function of the service is built the same way (Node.js 22 on
 * ARM64, one minified ESM bundle with source maps, its own log group with retention) and gets its
 * resources through `bind*` helpers that set the environment variable and the IAM grant together,
 * so a handler never has a variable without the permission behind it, or the reverse.
 */
import { Aws, Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat, SourceMapMode } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import type { IEventBus } from 'aws-cdk-lib/aws-events';
import { Construct } from 'constructs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventPublishStatement } from './job-events.ts';
import { acknowledge, acknowledgeWildcardResources } from './nag-acknowledgements.ts';
import { parseS3Uri, type TenantSources } from '../lambda/adapters/aws/s3-artifacts.ts';
import {
  ESM_REQUIRE_BANNER,
  FORMAT,
  lambdaAliases,
  MAIN_FIELDS,
  NODE_TARGET,
} from '../lambda/bundle/esbuild-config.ts';

/** The repository root: the bundles' project root, and where handlers and the lock file are. */
export const REPOSITORY_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The Lambda entry points, one file each under lambda/handlers/. */
export type HandlerName = 'api' | 'mcp' | 'task-events' | 'sweeper' | 'authorizer';

export interface HouseFunctionProps {
  readonly handler: HandlerName;
  readonly description: string;
  readonly timeout: Duration;
  readonly memorySize: number;
  readonly logRetention: RetentionDays;
  readonly logRemovalPolicy: RemovalPolicy;
  /** Where asynchronous invocations that failed every retry go. */
  readonly deadLetterQueue?: IQueue;
  /** Retries of a failed asynchronous invocation (Lambda's default is 2). */
  readonly retryAttempts?: number;
}

/** A Lambda function of this service with its log group; see the module comment. */
export class HouseFunction extends Construct {
  readonly function: NodejsFunction;
  readonly logGroup: LogGroup;
  readonly handlerName: HandlerName;

  constructor(scope: Construct, id: string, props: HouseFunctionProps) {
    super(scope, id);
    this.handlerName = props.handler;
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: props.logRemovalPolicy,
    });
    this.function = new NodejsFunction(this, 'Function', {
      description: props.description,
      entry: join(REPOSITORY_ROOT, 'lambda', 'handlers', `${props.handler}.ts`),
      handler: 'handler',
      projectRoot: REPOSITORY_ROOT,
      depsLockFilePath: join(REPOSITORY_ROOT, 'package-lock.json'),
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize,
      timeout: props.timeout,
      logGroup: this.logGroup,
      deadLetterQueue: props.deadLetterQueue,
      retryAttempts: props.retryAttempts,
      environment: { NODE_OPTIONS: '--enable-source-maps' },
      bundling: {
        minify: true,
        sourceMap: true,
        // Linked (index.mjs.map plus the sourceMappingURL comment --enable-source-maps needs to find it).
        sourceMapMode: SourceMapMode.DEFAULT,
        // Stack traces map to file and line without shipping the sources themselves.
        sourcesContent: false,
        // The shared configuration (lambda/bundle/esbuild-config.ts): target, format, banner.
        format: FORMAT as OutputFormat,
        target: NODE_TARGET,
        mainFields: MAIN_FIELDS,
        banner: ESM_REQUIRE_BANNER,
        // Import substitutions that keep unused copies out (one Ajv, SDK v2's small validator).
        esbuildArgs: { '--alias': Object.entries(lambdaAliases()).map(([from, to]) => `${from}=${to}`) },
        // Bundle the AWS SDK instead of using the runtime's copy: the code runs against the exact
        // versions package-lock.json pins and the tests use (lib-dynamodb, the S3 presigner and
        // newer request fields included), whatever SDK the runtime happens to ship. Costs a larger
        // bundle (a few hundred KB per client, minified) and some cold-start time.
        bundleAwsSDK: true,
      },
    });
    acknowledge(
      this,
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      'The AWS managed basic execution role only lets the function write its own logs.',
    );
    acknowledge(
      this,
      'L1',
      'Pinned to nodejs22.x, the runtime the project is tested for (the bundles target the oldest Node any of them runs on, lambda/bundle/esbuild-config.ts); moving to a newer runtime is a deliberate, tested change.',
    );
  }

  /** Sets an environment variable. */
  addEnvironment(name: string, value: string): this {
    this.function.addEnvironment(name, value);
    return this;
  }

  /** Adds a statement to the function's role. */
  addToRolePolicy(statement: PolicyStatement): this {
    this.function.addToRolePolicy(statement);
    return this;
  }

  /** The job table: NOTEBOOK_JOBS_TABLE plus read/write on the table and its indexes. */
  bindTable(table: ITable): this {
    this.addEnvironment('NOTEBOOK_JOBS_TABLE', table.tableName);
    table.grantReadWriteData(this.function);
    acknowledgeWildcardResources(
      this,
      [`${table.tableArn}/index/*`],
      'Queries the table through its global secondary indexes (list, queue, active jobs, runner lookup); index ARNs are only addressable by wildcard.',
    );
    return this;
  }

  /**
   * The job table for reading single items only: NOTEBOOK_JOBS_TABLE plus GetItem on items whose
   * partition key matches one of `keyPatterns` (IAM wildcards, e.g. `TOKEN#*`).
   */
  bindTableItems(table: ITable, keyPatterns: readonly string[]): this {
    this.addEnvironment('NOTEBOOK_JOBS_TABLE', table.tableName);
    this.addToRolePolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem'],
        resources: [table.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [...keyPatterns] } },
      }),
    );
    return this;
  }

  /**
   * The artifact bucket: NOTEBOOK_JOBS_BUCKET plus get/put/delete on the given prefixes and
   * ListBucket (so a missing object is a 404 rather than a 403, and a job's objects can be listed
   * for deletion).
   */
  bindBucket(bucket: IBucket, prefixes: readonly string[]): this {
    this.addEnvironment('NOTEBOOK_JOBS_BUCKET', bucket.bucketName);
    const objects = prefixes.map((prefix) => bucket.arnForObjects(`${prefix}*`));
    this.addToRolePolicy(
      new PolicyStatement({
        actions: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
        resources: objects,
      }),
    );
    this.addToRolePolicy(new PolicyStatement({ actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }));
    acknowledgeWildcardResources(
      this,
      objects,
      'Job notebooks are objects under fixed prefixes (inputs/<tenant>/<job>/, outputs/<tenant>/<job>/, uploads/<tenant>/); the grant is limited to those prefixes.',
    );
    return this;
  }

  /**
   * External notebook locations tenants may submit from (NOTEBOOK_JOBS_TENANT_SOURCES): the setting
   * plus read-only access to exactly those prefixes: GetObject on their objects, and ListBucket on
   * their buckets only for listings under them (`s3:prefix`), which `files.uri` s3:// folders need
   * (S3Artifacts.listSubmitted).
   */
  bindTenantSources(sources: TenantSources): this {
    if (Object.values(sources).flat().length === 0) return this;
    this.addEnvironment('NOTEBOOK_JOBS_TENANT_SOURCES', JSON.stringify(sources));
    const locations = [...new Set(Object.values(sources).flat())].map(
      (uri) => parseS3Uri(uri) as { bucket: string; key: string },
    );
    const objects = locations.map(({ bucket, key }) => `arn:${Aws.PARTITION}:s3:::${bucket}/${key}*`);
    this.addToRolePolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: objects }));
    for (const bucket of [...new Set(locations.map((l) => l.bucket))]) {
      const prefixes = locations.filter((l) => l.bucket === bucket).map((l) => `${l.key}*`);
      this.addToRolePolicy(
        new PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [`arn:${Aws.PARTITION}:s3:::${bucket}`],
          conditions: { StringLike: { 's3:prefix': prefixes } },
        }),
      );
    }
    acknowledgeWildcardResources(
      this,
      objects,
      'Read-only access to the notebook prefixes the operator allowed tenants to submit from (context tenantSources).',
    );
    return this;
  }

  /** A secret the function reads: `variable` holds its ARN. */
  bindSecret(secret: ISecret, variable: string): this {
    this.addEnvironment(variable, secret.secretArn);
    this.addToRolePolicy(
      new PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: [secret.secretArn] }),
    );
    return this;
  }

  /** The bus job state changes are published to: only events whose source is this service. */
  bindEventBus(bus: IEventBus): this {
    this.addEnvironment('NOTEBOOK_JOBS_EVENT_BUS', bus.eventBusName);
    this.addToRolePolicy(eventPublishStatement(bus));
    return this;
  }
}
