/**
 * The runner's AWS credentials, scoped to its one job. The task role can do nothing but assume the
 * runner role; at start the runner assumes it with a session policy naming only its job (its
 * `JOB#<id>` item, its tenant's settings item, its input folder, its output folder, its state-change
 * events), and uses those short-lived credentials for every DynamoDB, S3 and EventBridge call. The
 * session's permissions are the intersection of the runner role's policy and this session policy,
 * so a runner cannot touch another job's item or objects even though the role could.
 *
 * A tenant's notebook role is assumed through a second, separate session of the runner role whose
 * policy allows exactly one thing: sts:AssumeRole on that one role ARN.
 *
 * Role chaining (a role session assuming a role) caps every session at one hour, so credentials are
 * refreshed before they expire for as long as the job runs.
 */
import { AssumeRoleCommand, type STSClient } from '@aws-sdk/client-sts';
import { JOB_ID_PATTERN } from '../../lambda/core/ids.ts';
import { jobPartitionKey } from '../../lambda/adapters/dynamodb/table.ts';
import { WARM_KERNEL_PATTERN, warmPartitionKey } from '../../lambda/adapters/dynamodb/warm-runners.ts';
import { tenantSettingsPartition } from '../../lambda/adapters/dynamodb/tenant-settings.ts';
import { TENANT_PATTERN } from '../../lambda/adapters/dynamodb/token-store.ts';
import { DETAIL_TYPE, EVENT_SOURCE } from '../../lambda/adapters/aws/eventbridge-publisher.ts';
import { checkNotebookRoleArn, notebookRoleExternalId } from '../../lambda/core/notebook-role.ts';
import {
  checkSecretReference,
  isSecretsManagerArn,
  type SecretReference,
} from '../../lambda/core/secrets.ts';

/** The longest session role chaining allows (and the role's default maximum). */
export const SESSION_SECONDS = 3600;
/** Credentials this close to expiry are replaced; AWS SDK clients also refresh 5 minutes early. */
export const REFRESH_MARGIN_MS = 10 * 60 * 1000;
/** STS refuses plain-text session policies longer than this. */
export const MAX_SESSION_POLICY_CHARS = 2048;

/** What the session policy names: the resources of this deployment and of this job. */
export interface JobScope {
  /** The runner role (arn:<partition>:iam::<account>:role/...): gives partition and account. */
  runnerRoleArn: string;
  region: string;
  table: string;
  bucket: string;
  /** Bus name or ARN; unset: no events are published, and none may be. */
  eventBus: string | undefined;
  jobId: string;
  tenant: string;
}

/** An IAM policy document as STS takes it. */
export interface PolicyDocument {
  Version: '2012-10-17';
  Statement: Array<{
    Effect: 'Allow';
    Action: string | string[];
    Resource: string;
    Condition?: Record<string, Record<string, string | string[]>>;
  }>;
}

/** Short-lived credentials as AWS SDK clients take them. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
}

const RUNNER_ROLE_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role\/[A-Za-z0-9+=,.@_/-]{1,576}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;
/** S3 bucket names; DynamoDB table names; event bus names or ARNs. No IAM wildcard in any of them. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const TABLE = /^[A-Za-z0-9_.-]{3,255}$/;
const BUS = /^(arn:[a-z-]+:events:[a-z0-9-]+:\d{12}:event-bus\/)?[A-Za-z0-9._/-]{1,256}$/;

/** Partition and account of the runner role: every resource of the deployment lives there. */
function deployment(scope: JobScope): { partition: string; account: string } {
  const match = RUNNER_ROLE_ARN.exec(scope.runnerRoleArn);
  if (!match) throw new Error(`not an IAM role ARN: "${scope.runnerRoleArn}"`);
  return { partition: match[1] as string, account: match[2] as string };
}

/**
 * Every name that goes into a Resource is checked first: a `*` or `?` in a tenant, job id or
 * bucket name would be a wildcard there and widen the session.
 */
function checkScope(scope: JobScope): void {
  const checks: Array<[string, string, RegExp]> = [
    ['job id', scope.jobId, JOB_ID_PATTERN],
    ['tenant', scope.tenant, TENANT_PATTERN],
    ['region', scope.region, REGION],
    ['bucket', scope.bucket, BUCKET],
    ['table', scope.table, TABLE],
  ];
  if (scope.eventBus !== undefined) checks.push(['event bus', scope.eventBus, BUS]);
  for (const [what, value, pattern] of checks)
    if (!pattern.test(value))
      throw new Error(`cannot scope the runner's credentials: bad ${what} "${value}"`);
}

/** The session policy of a runner's data session: its job and nothing else. */
export function runnerSessionPolicy(scope: JobScope): PolicyDocument {
  checkScope(scope);
  const { partition, account } = deployment(scope);
  const { region, jobId, tenant } = scope;
  const table = `arn:${partition}:dynamodb:${region}:${account}:table/${scope.table}`;
  const objects = (kind: 'inputs' | 'outputs') =>
    `arn:${partition}:s3:::${scope.bucket}/${kind}/${tenant}/${jobId}/*`;
  const leadingKey = (key: string) => ({ 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [key] } });
  const statements: PolicyDocument['Statement'] = [
    {
      Effect: 'Allow',
      Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
      Resource: table,
      Condition: leadingKey(jobPartitionKey(jobId)),
    },
    {
      Effect: 'Allow',
      Action: 'dynamodb:GetItem',
      Resource: table,
      Condition: leadingKey(tenantSettingsPartition(tenant)),
    },
    // The folder holds the one notebook the api stored at submit (inputKey); its name is in the
    // job item, which the runner has not read yet when it asks for this session.
    // DeleteObject: the values of redacted parameters are deleted once the job has run
    // (runner/secrets.ts); the runner role allows it on that one file name only (lib/runner-task.ts).
    // The output folder also takes the job's log pages (outputs/<tenant>/<job>/logs/, see
    // lambda/adapters/aws/s3-log-pages.ts): no statement of their own, so none to widen.
    { Effect: 'Allow', Action: ['s3:GetObject', 's3:DeleteObject'], Resource: objects('inputs') },
    { Effect: 'Allow', Action: 's3:PutObject', Resource: objects('outputs') },
  ];
  if (scope.eventBus !== undefined) {
    const bus = scope.eventBus.startsWith('arn:')
      ? scope.eventBus
      : `arn:${partition}:events:${region}:${account}:event-bus/${scope.eventBus}`;
    // PutEvents can be conditioned on an entry's source and detail-type only, never on its detail:
    // the job id inside cannot be pinned (docs/architecture.md, Security model).
    statements.push({
      Effect: 'Allow',
      Action: 'events:PutEvents',
      Resource: bus,
      Condition: { StringEquals: { 'events:source': EVENT_SOURCE, 'events:detail-type': DETAIL_TYPE } },
    });
  }
  return { Version: '2012-10-17', Statement: statements };
}

/** The session policy of the session that assumes a tenant's notebook role: that one role only. */
export function notebookBrokerPolicy(notebookRoleArn: string): PolicyDocument {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: 'sts:AssumeRole',
        Resource: checkNotebookRoleArn(notebookRoleArn),
      },
    ],
  };
}

/**
 * The session policy of a session that reads one secret: that secret (or parameter) and nothing
 * else. The reference is checked against the tenant first (lambda/core/secrets.ts), so it names
 * one of the tenant's own secrets and carries no IAM wildcard.
 */
export function secretReaderPolicy(
  scope: Pick<JobScope, 'runnerRoleArn' | 'region' | 'tenant'>,
  reference: SecretReference,
): PolicyDocument {
  const { partition, account } = deployment(scope as JobScope);
  if (!REGION.test(scope.region)) throw new Error(`cannot scope a secret read: bad region "${scope.region}"`);
  const checked = checkSecretReference(scope.tenant, 'SECRET', `${reference.scheme}:${reference.target}`, {
    schemes: ['secretsmanager', 'ssm'],
    envPrefix: '',
  });
  const base = `arn:${partition}:${checked.scheme}:${scope.region}:${account}`;
  if (isSecretsManagerArn(checked.target) && checked.target.split(':')[4] !== account)
    throw new Error(`secret ${checked.target} is not in this deployment's account`);
  if (isSecretsManagerArn(checked.target) && checked.target.split(':')[1] !== partition)
    throw new Error(`secret ${checked.target} is not in this deployment's partition`);
  if (checked.scheme === 'ssm') {
    const parameter = `${base}:parameter${checked.target}`;
    return {
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Action: 'ssm:GetParameter', Resource: parameter },
        // A SecureString value is decrypted by KMS on the caller's behalf, with the parameter's ARN
        // as encryption context: only through Parameter Store, and only for this parameter.
        {
          Effect: 'Allow',
          Action: 'kms:Decrypt',
          Resource: `arn:${partition}:kms:${scope.region}:${account}:key/*`,
          Condition: {
            StringEquals: {
              'kms:ViaService': `ssm.${scope.region}.${partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com'}`,
              'kms:EncryptionContext:PARAMETER_ARN': parameter,
            },
          },
        },
      ],
    };
  }
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: 'secretsmanager:GetSecretValue',
        // A secret's ARN ends in "-" and six random characters that only Secrets Manager knows.
        Resource: isSecretsManagerArn(checked.target)
          ? checked.target
          : `${base}:secret:${checked.target}-??????`,
      },
    ],
  };
}

/** A runner role session that may read exactly one of the job's secrets. */
export function secretReaderSession(
  sts: STSClient,
  scope: Pick<JobScope, 'runnerRoleArn' | 'region' | 'tenant' | 'jobId'>,
  reference: SecretReference,
  now?: () => number,
): AssumedRole {
  return runnerRoleSession(sts, scope, secretReaderPolicy(scope, reference), now);
}

/** The policy as sent: compact JSON, refused here if STS would refuse it for its length. */
export function policyText(policy: PolicyDocument): string {
  const text = JSON.stringify(policy);
  if (text.length > MAX_SESSION_POLICY_CHARS)
    throw new Error(
      `session policy is ${text.length} characters; STS takes at most ${MAX_SESSION_POLICY_CHARS}`,
    );
  return text;
}

/** What one AssumeRole call asks for. */
export interface AssumeRoleRequest {
  RoleArn: string;
  RoleSessionName: string;
  DurationSeconds: number;
  Policy?: string;
  ExternalId?: string;
}

/**
 * A refreshing credentials provider for one role session: assumes the role on first use and again
 * whenever the credentials it holds are within REFRESH_MARGIN_MS of expiring. Concurrent callers
 * share one STS call. `sts` signs with whatever credentials it was built with (the task role's, or
 * another AssumedRole's provider for a chained session).
 */
export class AssumedRole {
  private current: Credentials | null = null;
  private pending: Promise<Credentials> | null = null;

  constructor(
    private readonly sts: STSClient,
    readonly request: AssumeRoleRequest,
    private readonly now: () => number = Date.now,
  ) {}

  /** Usable as an AWS SDK client's `credentials`. */
  readonly provider = (): Promise<Credentials> => {
    if (this.current && this.current.expiration.getTime() - REFRESH_MARGIN_MS > this.now())
      return Promise.resolve(this.current);
    this.pending ??= this.assume().finally(() => (this.pending = null));
    return this.pending;
  };

  /** When the credentials held now stop being handed out (null before the first call). */
  refreshDueAt(): number | null {
    return this.current ? this.current.expiration.getTime() - REFRESH_MARGIN_MS : null;
  }

  private async assume(): Promise<Credentials> {
    const out = await this.sts.send(new AssumeRoleCommand({ ...this.request }));
    const c = out.Credentials;
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration)
      throw new Error(`STS returned no credentials for ${this.request.RoleArn}`);
    this.current = {
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.SessionToken,
      expiration: c.Expiration,
    };
    return this.current;
  }
}

/** A session of the runner role for this job, limited by `policy` (a session policy). */
function runnerRoleSession(
  sts: STSClient,
  scope: Pick<JobScope, 'runnerRoleArn' | 'jobId'>,
  policy: PolicyDocument,
  now?: () => number,
): AssumedRole {
  return new AssumedRole(
    sts,
    {
      RoleArn: scope.runnerRoleArn,
      RoleSessionName: scope.jobId,
      DurationSeconds: SESSION_SECONDS,
      Policy: policyText(policy),
    },
    now,
  );
}

/** The runner's data session: the runner role, limited to its job. */
export function runnerSession(sts: STSClient, scope: JobScope, now?: () => number): AssumedRole {
  return runnerRoleSession(sts, scope, runnerSessionPolicy(scope), now);
}

/** What a warm runner's session names before it has a job: its kernel's warm runner items. */
export interface WarmScope {
  runnerRoleArn: string;
  region: string;
  table: string;
  kernel: string;
  /** The STS session name (the runner's task id): CloudTrail then tells warm runners apart. */
  sessionName: string;
}

/**
 * The session policy of a warm runner waiting for a job: read and write the `WARM#<kernel>` items
 * (its registration, heartbeat and offers), nothing else. Once offered a job it claims and runs it
 * with that job's own data session (runnerSession), as a cold runner does.
 */
export function warmSessionPolicy(scope: WarmScope): PolicyDocument {
  const { partition, account } = deployment(scope as unknown as JobScope);
  if (!REGION.test(scope.region))
    throw new Error(`cannot scope a warm session: bad region "${scope.region}"`);
  if (!TABLE.test(scope.table)) throw new Error(`cannot scope a warm session: bad table "${scope.table}"`);
  if (!WARM_KERNEL_PATTERN.test(scope.kernel))
    throw new Error(`cannot scope a warm session: bad kernel "${scope.kernel}"`);
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
        Resource: `arn:${partition}:dynamodb:${scope.region}:${account}:table/${scope.table}`,
        Condition: {
          'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [warmPartitionKey(scope.kernel)] },
        },
      },
    ],
  };
}

/** A warm runner's session while it waits for a job (warmSessionPolicy). */
export function warmSession(sts: STSClient, scope: WarmScope, now?: () => number): AssumedRole {
  if (!/^[\w+=,.@-]{2,64}$/.test(scope.sessionName))
    throw new Error(`not an STS session name: "${scope.sessionName}"`);
  return new AssumedRole(
    sts,
    {
      RoleArn: scope.runnerRoleArn,
      RoleSessionName: scope.sessionName,
      DurationSeconds: SESSION_SECONDS,
      Policy: policyText(warmSessionPolicy(scope)),
    },
    now,
  );
}

/** The session that may assume only the tenant's notebook role (a separate runner role session). */
export function notebookBrokerSession(
  sts: STSClient,
  scope: Pick<JobScope, 'runnerRoleArn' | 'jobId'>,
  notebookRoleArn: string,
  now?: () => number,
): AssumedRole {
  return runnerRoleSession(sts, scope, notebookBrokerPolicy(notebookRoleArn), now);
}

/** The tenant's notebook role, assumed with the tenant's external id; its credentials go to the kernel. */
export function notebookRoleSession(
  sts: STSClient,
  scope: Pick<JobScope, 'jobId' | 'tenant'>,
  notebookRoleArn: string,
  now?: () => number,
): AssumedRole {
  return new AssumedRole(
    sts,
    {
      RoleArn: checkNotebookRoleArn(notebookRoleArn),
      RoleSessionName: scope.jobId,
      DurationSeconds: SESSION_SECONDS,
      ExternalId: notebookRoleExternalId(scope.tenant),
    },
    now,
  );
}
