/**
 * The ECS side of a job: the cluster, the Fargate task definition whose one container (`runner`)
 * runs container/runner from the image in container/Dockerfile, its log group, and the task role.
 * `bindLauncher` gives a Lambda what it needs to start, stop and follow these tasks: the
 * environment variables and exactly the ECS, IAM and Logs permissions for this task definition in
 * this cluster.
 */
import { Duration, Stack, ArnFormat, type RemovalPolicy } from 'aws-cdk-lib';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import {
  AwsLogDriverMode,
  Cluster,
  ContainerImage,
  ContainerInsights,
  CpuArchitecture,
  FargateTaskDefinition,
  LinuxParameters,
  LogDrivers,
  OperatingSystemFamily,
  type ContainerDefinition,
} from 'aws-cdk-lib/aws-ecs';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import type { IEventBus } from 'aws-cdk-lib/aws-events';
import { ArnPrincipal, PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { jobPartitionKey } from '../lambda/adapters/dynamodb/table.ts';
import { tenantSettingsPartition } from '../lambda/adapters/dynamodb/tenant-settings.ts';
import { ARTIFACT_PREFIXES } from './artifact-bucket.ts';
import { REPOSITORY_ROOT, type HouseFunction } from './house-function.ts';
import { eventPublishStatement } from './job-events.ts';
import { acknowledge, acknowledgeWildcardResources } from './nag-acknowledgements.ts';
import type { Network } from './network.ts';
import type { TaskArchitecture } from './stack-config.ts';
import { SETTINGS } from '../lambda/core/settings.ts';
import { AWS_SECRET_ROOT, REDACTED_PARAMETERS_FILE } from '../lambda/core/secrets.ts';

/** Name of the runner container (NOTEBOOK_JOBS_CONTAINER; RunTask overrides address it by name). */
export const RUNNER_CONTAINER = 'runner';
/** awslogs stream prefix: a task's stream is `runner/runner/<task id>`. */
export const LOG_STREAM_PREFIX = 'runner';
/**
 * The runner runs as root: it starts each job's engine and kernel as the image's `kernel` user
 * (uid 1000, NOTEBOOK_JOBS_KERNEL_USER) through the engine sandbox, and switching users needs root
 * (Fargate grants a root container Docker's default capabilities, SETUID and SETGID among them).
 * The notebook's code never runs as root and cannot read the runner's environment or memory.
 */
export const RUNNER_USER = '0:0';
/** The user kernels run as (container/Dockerfile creates it). */
export const KERNEL_USER = 'kernel';
/** Fargate's maximum: time between SIGTERM and SIGKILL, for saving the partial notebook. */
export const STOP_TIMEOUT = Duration.seconds(120);

export interface RunnerTaskProps {
  readonly network: Network;
  readonly table: ITable;
  readonly bucket: IBucket;
  readonly eventBus: IEventBus;
  readonly cpu: number;
  readonly memoryMiB: number;
  readonly architecture: TaskArchitecture;
  readonly useFargateSpot: boolean;
  readonly retentionDays: number;
  readonly logRetention: RetentionDays;
  readonly logRemovalPolicy: RemovalPolicy;
}

/** The cluster, task definition, runner log group and roles of job tasks. */
export class RunnerTask extends Construct {
  readonly cluster: Cluster;
  readonly taskDefinition: FargateTaskDefinition;
  readonly container: ContainerDefinition;
  readonly logGroup: LogGroup;
  /** The task's own role: it may only assume `runnerRole`. */
  readonly taskRole: Role;
  /**
   * What the runner works with, always through a session scoped to one job
   * (container/runner/job-credentials.ts). Tenants' notebook roles trust this role.
   */
  readonly runnerRole: Role;
  private readonly props: RunnerTaskProps;

  constructor(scope: Construct, id: string, props: RunnerTaskProps) {
    super(scope, id);
    this.props = props;
    const stack = Stack.of(this);
    this.cluster = new Cluster(this, 'Cluster', {
      vpc: props.network.vpc,
      containerInsightsV2: ContainerInsights.ENABLED,
      // FARGATE and FARGATE_SPOT, so RunTask can ask for either (useFargateSpot picks which).
      enableFargateCapacityProviders: true,
    });
    this.logGroup = new LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: props.logRemovalPolicy,
    });
    this.taskRole = new Role(this, 'TaskRole', {
      description:
        'notebook-jobs runner task: may only assume the runner role (with a job-scoped session policy)',
      assumedBy: new ServicePrincipal('ecs-tasks.amazonaws.com', {
        // Only ECS acting for this account may assume it (confused-deputy guard).
        conditions: {
          StringEquals: { 'aws:SourceAccount': stack.account },
          ArnLike: { 'aws:SourceArn': stack.formatArn({ service: 'ecs', resource: '*' }) },
        },
      }),
    });
    this.runnerRole = new Role(this, 'RunnerRole', {
      description:
        'notebook-jobs runner: job items, input and output folders, job events, tenants notebook roles; always assumed with a session policy naming one job',
      // Role chaining caps sessions at one hour anyway; the runner refreshes before expiry.
      maxSessionDuration: Duration.hours(1),
      assumedBy: new ArnPrincipal(this.taskRole.roleArn),
    });
    this.taskRole.addToPolicy(
      new PolicyStatement({ actions: ['sts:AssumeRole'], resources: [this.runnerRole.roleArn] }),
    );
    this.grantRunner(props);

    const arm = props.architecture === 'arm64';
    this.taskDefinition = new FargateTaskDefinition(this, 'TaskDefinition', {
      cpu: props.cpu,
      memoryLimitMiB: props.memoryMiB,
      taskRole: this.taskRole,
      runtimePlatform: {
        operatingSystemFamily: OperatingSystemFamily.LINUX,
        // ARM64 (Graviton) Fargate costs about 20% less than x86 for the same size; conda-forge and
        // .NET both ship arm64 builds. The image must be built for the same platform (below).
        cpuArchitecture: arm ? CpuArchitecture.ARM64 : CpuArchitecture.X86_64,
      },
      volumes: [{ name: 'tmp' }],
    });
    this.container = this.taskDefinition.addContainer(RUNNER_CONTAINER, {
      containerName: RUNNER_CONTAINER,
      image: ContainerImage.fromAsset(REPOSITORY_ROOT, {
        file: 'container/Dockerfile',
        platform: arm ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      }),
      essential: true,
      user: RUNNER_USER,
      // Writable only where papermill and kernels write: /tmp, an empty task-storage volume (a
      // kernel's HOME, where pip --user and NuGet write, is its working folder there).
      readonlyRootFilesystem: true,
      stopTimeout: STOP_TIMEOUT,
      // An init process as PID 1 forwards SIGTERM to node and reaps whatever is left.
      linuxParameters: new LinuxParameters(this, 'LinuxParameters', { initProcessEnabled: true }),
      logging: LogDrivers.awsLogs({
        streamPrefix: LOG_STREAM_PREFIX,
        logGroup: this.logGroup,
        // The log is the job's log that users page through: block rather than drop lines when
        // CloudWatch is slow (non-blocking mode discards lines once its buffer is full).
        mode: AwsLogDriverMode.BLOCKING,
      }),
      environment: {
        NOTEBOOK_JOBS_TABLE: props.table.tableName,
        NOTEBOOK_JOBS_BUCKET: props.bucket.bucketName,
        NOTEBOOK_JOBS_EVENT_BUS: props.eventBus.eventBusName,
        [SETTINGS.retentionDays.variable]: String(props.retentionDays),
        NOTEBOOK_JOBS_ARTIFACTS: 's3',
        NOTEBOOK_JOBS_ENGINE: 'papermill',
        NOTEBOOK_JOBS_PYTHON: '/opt/conda/bin/python',
        NOTEBOOK_JOBS_ENGINES_DIR: '/app/engines',
        NOTEBOOK_JOBS_KERNEL_USER: KERNEL_USER,
        NOTEBOOK_JOBS_RUNNER_ROLE_ARN: this.runnerRole.roleArn,
        AWS_REGION: stack.region,
      },
    });
    this.container.addMountPoints({ sourceVolume: 'tmp', containerPath: '/tmp', readOnly: false });

    acknowledge(
      this.taskDefinition,
      'ECS2',
      'The environment holds only names (table, bucket, bus) and fixed settings; the runner has no secrets.',
    );
    const executionRole = this.taskDefinition.obtainExecutionRole();
    acknowledge(
      executionRole,
      'IAM5[Resource::*]',
      'ecr:GetAuthorizationToken has no resource-level permissions; image pulls themselves are limited to the asset repository.',
    );
  }

  /** Gives a Lambda the variables and permissions to run, stop and follow this task definition's tasks. */
  bindLauncher(fn: HouseFunction): void {
    const stack = Stack.of(this);
    const { network } = this.props;
    // The family, not a revision's ARN: RunTask then starts the latest ACTIVE revision, so a launch
    // in the middle of a deploy (new revision registered, the old one deregistered, Lambdas not yet
    // updated) neither fails nor needs the grant of a revision that is gone.
    fn.addEnvironment('NOTEBOOK_JOBS_CLUSTER', this.cluster.clusterArn)
      .addEnvironment('NOTEBOOK_JOBS_TASK_DEFINITION', this.taskDefinition.family)
      .addEnvironment('NOTEBOOK_JOBS_CONTAINER', RUNNER_CONTAINER)
      .addEnvironment('NOTEBOOK_JOBS_SUBNETS', network.subnetIdList())
      .addEnvironment('NOTEBOOK_JOBS_SECURITY_GROUPS', network.taskSecurityGroup.securityGroupId)
      .addEnvironment('NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP', network.assignPublicIp ? 'ENABLED' : 'DISABLED')
      .addEnvironment('NOTEBOOK_JOBS_CAPACITY', this.props.useFargateSpot ? 'FARGATE_SPOT' : 'FARGATE')
      .addEnvironment('NOTEBOOK_JOBS_LOG_GROUP', this.logGroup.logGroupName)
      .addEnvironment('NOTEBOOK_JOBS_LOG_STREAM_PREFIX', LOG_STREAM_PREFIX);

    const inThisCluster = { ArnEquals: { 'ecs:cluster': this.cluster.clusterArn } };
    const revisions = this.familyRevisions();
    fn.addToRolePolicy(
      new PolicyStatement({ actions: ['ecs:RunTask'], resources: [revisions], conditions: inThisCluster }),
    );
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['iam:PassRole'],
        resources: [this.taskRole.roleArn, this.taskDefinition.obtainExecutionRole().roleArn],
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );
    const tasks = stack.formatArn({
      service: 'ecs',
      resource: 'task',
      resourceName: `${this.cluster.clusterName}/*`,
    });
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['ecs:StopTask', 'ecs:DescribeTasks'],
        resources: [tasks],
        conditions: inThisCluster,
      }),
    );
    // RunTask tags each task with its job id and tenant (lambda/adapters/aws/ecs-launcher.ts); ECS
    // authorizes those tags as ecs:TagResource, allowed here only as part of a RunTask.
    fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['ecs:TagResource'],
        resources: [tasks],
        conditions: { StringEquals: { 'ecs:CreateAction': 'RunTask' } },
      }),
    );
    const streams = stack.formatArn({
      service: 'logs',
      resource: 'log-group',
      resourceName: `${this.logGroup.logGroupName}:log-stream:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    fn.addToRolePolicy(
      new PolicyStatement({ actions: ['logs:GetLogEvents', 'logs:DeleteLogStream'], resources: [streams] }),
    );
    acknowledgeWildcardResources(
      fn,
      [revisions],
      "Every revision of this one task family: RunTask names the family and ECS picks the latest ACTIVE revision, so the grant must outlive each deploy's revision swap.",
    );
    acknowledgeWildcardResources(
      fn,
      [tasks],
      'Task ids are only known once RunTask returns; the grant covers tasks of this one cluster (Stop/Describe also under an ecs:cluster condition, tagging only as part of RunTask).',
    );
    acknowledgeWildcardResources(
      fn,
      [streams],
      'Each job task writes its own log stream (runner/runner/<task id>) in the runner log group; the grant covers that group only.',
    );
  }

  /** `arn:...:task-definition/<family>:*`: every revision of the runner's task family. */
  familyRevisions(): string {
    return Stack.of(this).formatArn({
      service: 'ecs',
      resource: 'task-definition',
      resourceName: `${this.taskDefinition.family}:*`,
    });
  }

  /**
   * The runner role: the union of what any one runner does (container/runner/runner.ts through the
   * DynamoDB store), which each runner narrows to its own job with a session policy: read its job
   * (GetItem) and update it (UpdateItem), on job items only; read its tenant's settings item; read
   * the stored input notebook; write the output notebook; publish its state change; assume its
   * tenant's notebook role. No CloudWatch Logs permission: the runner logs to stdout and the awslogs
   * driver ships the lines with the execution role, which the container never holds.
   */
  private grantRunner(props: RunnerTaskProps): void {
    const role = this.runnerRole;
    role.addToPolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        resources: [props.table.tableArn],
        // Job items only: their partition keys are JOB#<job id> (never the slot or token items).
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [jobPartitionKey('*')] } },
      }),
    );
    role.addToPolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem'],
        resources: [props.table.tableArn],
        conditions: {
          'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': [tenantSettingsPartition('*')] },
        },
      }),
    );
    // The runner reads the copy the api stored at submit (inputs/), never uploads/ or external URIs.
    const readable = [props.bucket.arnForObjects(`${ARTIFACT_PREFIXES.inputs}*`)];
    const writable = [props.bucket.arnForObjects(`${ARTIFACT_PREFIXES.outputs}*`)];
    role.addToPolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: readable }));
    role.addToPolicy(new PolicyStatement({ actions: ['s3:PutObject'], resources: writable }));
    // The values of a job's redacted parameters, deleted by its runner once the job has run.
    const deletable = [
      props.bucket.arnForObjects(`${ARTIFACT_PREFIXES.inputs}*/${REDACTED_PARAMETERS_FILE}`),
    ];
    role.addToPolicy(new PolicyStatement({ actions: ['s3:DeleteObject'], resources: deletable }));
    // Jobs' secrets: only under notebook-jobs/ (each tenant's under notebook-jobs/<tenant>/, checked
    // at submit); each read is a session naming that one secret (job-credentials.ts).
    const stack = Stack.of(this);
    const secrets = [
      stack.formatArn({
        service: 'secretsmanager',
        resource: 'secret',
        resourceName: `${AWS_SECRET_ROOT}/*`,
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      }),
    ];
    const parameter = stack.formatArn({
      service: 'ssm',
      resource: 'parameter',
      resourceName: `${AWS_SECRET_ROOT}/*`,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
    const parameters = [parameter];
    role.addToPolicy(new PolicyStatement({ actions: ['secretsmanager:GetSecretValue'], resources: secrets }));
    role.addToPolicy(new PolicyStatement({ actions: ['ssm:GetParameter'], resources: parameters }));
    // SecureString values: KMS decrypts them for Parameter Store with the parameter's ARN as
    // encryption context, so only parameters under notebook-jobs/ and only through Parameter Store
    // (keys of this account; a customer managed key's policy must also allow the runner role).
    const keys = [stack.formatArn({ service: 'kms', resource: 'key', resourceName: '*' })];
    role.addToPolicy(
      new PolicyStatement({
        actions: ['kms:Decrypt'],
        resources: keys,
        conditions: {
          StringEquals: { 'kms:ViaService': `ssm.${stack.region}.${stack.urlSuffix}` },
          StringLike: { 'kms:EncryptionContext:PARAMETER_ARN': parameter },
        },
      }),
    );
    role.addToPolicy(eventPublishStatement(props.eventBus));
    // Tenants' notebook roles live in their own accounts and are configured after deployment.
    const anyRole = Stack.of(this).formatArn({
      service: 'iam',
      region: '',
      account: '*',
      resource: 'role',
      resourceName: '*',
    });
    role.addToPolicy(new PolicyStatement({ actions: ['sts:AssumeRole'], resources: [anyRole] }));
    acknowledgeWildcardResources(
      role,
      [...readable, ...writable, ...deletable],
      'Job ids are only known at run time; every session of this role carries a session policy naming one job (inputs/<tenant>/<job>/*, outputs/<tenant>/<job>/*).',
    );
    acknowledgeWildcardResources(
      role,
      [anyRole],
      "Tenants' notebook roles are in their accounts and set after deployment; each session that may assume one names exactly that role ARN in its session policy, and the tenant's trust policy requires the tenant's external id.",
    );
    acknowledgeWildcardResources(
      role,
      [...secrets, ...parameters, ...keys],
      'Secret names are chosen by tenants (under notebook-jobs/<tenant>/, checked at submit); every read is a session whose policy names exactly one referenced secret of the job (job-credentials.ts secretReaderPolicy). kms:Decrypt is limited to Parameter Store decrypting parameters under notebook-jobs/ (kms:ViaService and the PARAMETER_ARN encryption context).',
    );
  }
}
