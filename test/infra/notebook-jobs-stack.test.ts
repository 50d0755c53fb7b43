/**
 * CDK assertions on what matters in the synthesized template: table, bucket, task definition,
 * Lambdas, event rules, API, IAM scope, metrics and outputs. Built with cdk.json's feature flags,
 * bundling skipped (`aws:cdk:bundling-stacks: []`; the CLI synth test bundles for real).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Stack, type CfnElement } from 'aws-cdk-lib';
import { AssetManifestArtifact } from 'aws-cdk-lib/cx-api';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import type { IRole } from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import { describe, expect, it, vi } from 'vitest';
import { INDEXES, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE } from '../../lambda/adapters/dynamodb/table.ts';
import { JOB_METRIC_FILTERS } from '../../lib/job-metrics.ts';
import { AUTHORIZER_DENIAL_PATTERN } from '../../lib/observability.ts';
import { handler as authorize, logger as authorizerLogger } from '../../lambda/handlers/authorizer.ts';
import { NotebookJobsStack } from '../../lib/notebook-jobs-stack.ts';
import { readStackConfig } from '../../lib/stack-config.ts';
import { PUBLIC_ROUTES, ROUTES, type Route } from '../../lambda/http/routes.ts';
import { MAX_REQUEST_BODY_BYTES } from '../../lambda/core/settings.ts';

const CDK_JSON = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context: Record<string, unknown>;
};

const built = new Map<string, { app: App; stack: NotebookJobsStack; template: Template }>();

/** The stack for some context (built once per distinct context). */
function synth(context: Record<string, unknown> = {}) {
  const key = JSON.stringify(context);
  let entry = built.get(key);
  if (!entry) {
    const app = new App({ context: { ...CDK_JSON.context, 'aws:cdk:bundling-stacks': [], ...context } });
    const stack = new NotebookJobsStack(app, 'Test', { config: readStackConfig(app.node) });
    entry = { app, stack, template: Template.fromStack(stack) };
    built.set(key, entry);
  }
  return entry;
}

function logicalId(construct: IConstruct): string {
  const element = (construct.node.defaultChild ?? construct) as CfnElement;
  return Stack.of(construct).getLogicalId(element);
}
const ref = (construct: IConstruct) => ({ Ref: logicalId(construct) });
const arnOf = (construct: IConstruct) => ({ 'Fn::GetAtt': [logicalId(construct), 'Arn'] });

interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, unknown>;
}

/** Every statement of every inline policy attached to a role. */
function statementsOf(template: Template, role: IRole): Statement[] {
  const roleRef = ref(role);
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((policy) =>
      (policy.Properties.Roles as unknown[]).some((r) => JSON.stringify(r) === JSON.stringify(roleRef)),
    )
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

const actionsOf = (statement: Statement) => [statement.Action].flat();
/** An ARN in the stack's partition, region and account, as CDK renders it: `arn:<p>:<service>:<r>:<a><parts>`. */
const accountArn = (service: string, ...parts: unknown[]) => ({
  'Fn::Join': [
    '',
    [
      'arn:',
      { Ref: 'AWS::Partition' },
      `:${service}:`,
      { Ref: 'AWS::Region' },
      ':',
      { Ref: 'AWS::AccountId' },
      ...parts,
    ],
  ],
});

describe('synthesis', () => {
  it('raises no CDK warning or error (deprecated APIs, invalid combinations)', () => {
    for (const context of [
      {},
      { egress: 'private', alarmEmail: 'ops@example.com', removalPolicy: 'destroy' },
    ]) {
      const annotations = Annotations.fromStack(synth(context).stack);
      annotations.hasNoWarning('*', Match.anyValue());
      annotations.hasNoError('*', Match.anyValue());
    }
  }, 180_000); // two full syntheses; slow on a shared 2-core machine
});

describe('DynamoDB table', () => {
  it('has the store keys, on-demand billing, PITR, TTL and is retained by default', () => {
    const { template, stack } = synth();
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: PARTITION_KEY, KeyType: 'HASH' },
        { AttributeName: SORT_KEY, KeyType: 'RANGE' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
      DeletionProtectionEnabled: true,
    });
    template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    expect(logicalId(stack.table.table)).toBeTruthy();
  });

  it('has every index the store queries, with its keys and projection', () => {
    const { template } = synth();
    const table = Object.values(template.findResources('AWS::DynamoDB::Table'))[0];
    const indexes = table?.Properties.GlobalSecondaryIndexes as unknown[];
    expect(indexes).toHaveLength(Object.keys(INDEXES).length);
    for (const index of Object.values(INDEXES)) {
      const keys: { AttributeName: string; KeyType: string }[] = [
        { AttributeName: index.partitionKey, KeyType: 'HASH' },
      ];
      if ('sortKey' in index) keys.push({ AttributeName: index.sortKey, KeyType: 'RANGE' });
      expect(indexes).toContainEqual({
        IndexName: index.name,
        KeySchema: keys,
        Projection: { ProjectionType: index.projection },
      });
    }
  });

  it('can be destroyed with the stack when context removalPolicy is destroy', () => {
    const { template } = synth({ removalPolicy: 'destroy' });
    template.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Delete' });
    template.hasResourceProperties('AWS::DynamoDB::Table', { DeletionProtectionEnabled: false });
  });
});

describe('artifact bucket', () => {
  it('is private, encrypted, TLS-only and logs access to the log bucket', () => {
    const { template, stack } = synth();
    const bucket = stack.artifacts.bucket;
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LoggingConfiguration: {
        DestinationBucketName: ref(stack.artifacts.accessLogs),
        LogFilePrefix: 'artifacts/',
      },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: ref(bucket),
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } },
          }),
        ]),
      },
    });
  });

  it('expires uploads after a day and notebooks after the retention days', () => {
    const { template, stack } = synth({ retentionDays: 14 });
    const resources = template.findResources('AWS::S3::Bucket');
    const rules = resources[logicalId(stack.artifacts.bucket)]?.Properties.LifecycleConfiguration.Rules;
    expect(rules).toEqual([
      { Id: 'expire-uploads', Prefix: 'uploads/', ExpirationInDays: 1, Status: 'Enabled' },
      { Id: 'expire-inputs', Prefix: 'inputs/', ExpirationInDays: 14, Status: 'Enabled' },
      { Id: 'expire-outputs', Prefix: 'outputs/', ExpirationInDays: 14, Status: 'Enabled' },
      {
        Id: 'abort-incomplete-multipart-uploads',
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
        Status: 'Enabled',
      },
    ]);
  });
});

describe('runner task definition', () => {
  it('is a Fargate ARM64 task of the configured size', () => {
    const { template } = synth();
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      Cpu: '1024',
      Memory: '4096',
      NetworkMode: 'awsvpc',
      RequiresCompatibilities: ['FARGATE'],
      RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' },
    });
    synth({ taskCpu: '2048', taskMemory: '8192', taskArchitecture: 'x86_64' }).template.hasResourceProperties(
      'AWS::ECS::TaskDefinition',
      { Cpu: '2048', Memory: '8192', RuntimePlatform: { CpuArchitecture: 'X86_64' } },
    );
  });

  it('runs the runner container as root (kernels as `kernel`), read-only, with awslogs and a 120 s stop timeout', () => {
    const { template, stack } = synth();
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      TaskRoleArn: arnOf(stack.runner.taskRole),
      Volumes: [{ Name: 'tmp' }],
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'runner',
          Essential: true,
          User: '0:0',
          ReadonlyRootFilesystem: true,
          StopTimeout: 120,
          LinuxParameters: { InitProcessEnabled: true },
          MountPoints: [{ ContainerPath: '/tmp', ReadOnly: false, SourceVolume: 'tmp' }],
          LogConfiguration: {
            LogDriver: 'awslogs',
            Options: {
              'awslogs-group': ref(stack.runner.logGroup),
              'awslogs-stream-prefix': 'runner',
              'awslogs-region': { Ref: 'AWS::Region' },
              mode: 'blocking',
            },
          },
        }),
      ],
    });
  });

  it('gives the runner its settings in the environment', () => {
    const { template, stack } = synth({ retentionDays: 7 });
    const taskDefinition = Object.values(template.findResources('AWS::ECS::TaskDefinition'))[0];
    const environment = Object.fromEntries(
      (
        taskDefinition?.Properties.ContainerDefinitions[0].Environment as { Name: string; Value: unknown }[]
      ).map((entry) => [entry.Name, entry.Value]),
    );
    expect(environment).toEqual({
      NOTEBOOK_JOBS_TABLE: ref(stack.table.table),
      NOTEBOOK_JOBS_BUCKET: ref(stack.artifacts.bucket),
      NOTEBOOK_JOBS_EVENT_BUS: 'default',
      NOTEBOOK_JOBS_RETENTION_DAYS: '7',
      NOTEBOOK_JOBS_ARTIFACTS: 's3',
      NOTEBOOK_JOBS_ENGINE: 'papermill',
      NOTEBOOK_JOBS_PYTHON: '/opt/conda/bin/python',
      NOTEBOOK_JOBS_ENGINES_DIR: '/app/engines',
      NOTEBOOK_JOBS_KERNEL_USER: 'kernel',
      NOTEBOOK_JOBS_RUNNER_ROLE_ARN: arnOf(stack.runner.runnerRole),
      AWS_REGION: { Ref: 'AWS::Region' },
    });
  });

  it('keeps the runner log group for the log retention days', () => {
    const { template, stack } = synth({ logRetentionDays: 14 });
    expect(template.findResources('AWS::Logs::LogGroup')[logicalId(stack.runner.logGroup)]).toMatchObject({
      Properties: { RetentionInDays: 14 },
    });
  });

  it('builds the image from container/Dockerfile at the repository root, for the task platform', () => {
    const { app } = synth();
    const assembly = app.synth();
    const manifests = assembly.artifacts.filter(
      (artifact): artifact is AssetManifestArtifact => artifact instanceof AssetManifestArtifact,
    );
    const images = manifests.flatMap((manifest) => Object.values(manifest.contents.dockerImages ?? {}));
    expect(images).toHaveLength(1);
    const source = images[0]?.source;
    expect(source).toMatchObject({ dockerFile: 'container/Dockerfile', platform: 'linux/arm64' });
    // The staged build context holds what the Dockerfile copies, and nothing .dockerignore leaves out.
    const context = join(assembly.directory, source?.directory ?? 'missing');
    for (const needed of ['container/Dockerfile', 'container/environment.yml', 'container/runner/main.ts']) {
      expect(existsSync(join(context, needed)), needed).toBe(true);
    }
    for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'lambda/core/job.ts']) {
      expect(existsSync(join(context, needed)), needed).toBe(true);
    }
    for (const excluded of ['node_modules', 'test', 'docs', '.git', 'bench', 'lib', 'cdk.json']) {
      expect(existsSync(join(context, excluded)), excluded).toBe(false);
    }
  });
});

describe('Lambda functions', () => {
  const names = ['api', 'mcp', 'task-events', 'sweeper', 'authorizer'] as const;

  it('are five Node.js 22 ARM64 functions, each with its own log group kept for the retention days', () => {
    const { template, stack } = synth({ logRetentionDays: 14 });
    const functions = template.findResources('AWS::Lambda::Function', {
      Properties: { Runtime: 'nodejs22.x' },
    });
    expect(Object.keys(functions)).toHaveLength(5);
    const logGroups = template.findResources('AWS::Logs::LogGroup');
    for (const name of names) {
      const house = stack.functions[name];
      const fn = functions[logicalId(house.function)];
      expect(fn?.Properties).toMatchObject({
        Architectures: ['arm64'],
        Handler: 'index.handler',
        LoggingConfig: { LogGroup: ref(house.logGroup) },
      });
      expect(fn?.Properties.Environment.Variables.NODE_OPTIONS).toBe('--enable-source-maps');
      expect(logGroups[logicalId(house.logGroup)]?.Properties.RetentionInDays).toBe(14);
    }
  });

  it('have the timeouts and memory of their job', () => {
    const { template, stack } = synth();
    const expected = {
      api: [29, 512],
      mcp: [29, 512],
      'task-events': [60, 256],
      sweeper: [60, 256],
      authorizer: [5, 256],
    } as const;
    const functions = template.findResources('AWS::Lambda::Function');
    for (const name of names) {
      const properties = functions[logicalId(stack.functions[name].function)]?.Properties;
      expect([properties.Timeout, properties.MemorySize], name).toEqual(expected[name]);
    }
  });

  it('lets only the api and mcp Lambdas read the notebook prefixes tenants may submit from', () => {
    const sources = {
      acme: ['s3://acme-data/notebooks/', 's3://acme-data/shared/'],
      '*': ['s3://shared-nb/public/'],
    };
    const { template, stack } = synth({ tenantSources: JSON.stringify(sources) });
    const functions = template.findResources('AWS::Lambda::Function');
    const policies = Object.values(template.findResources('AWS::IAM::Policy'));
    const readsSources = (name: (typeof names)[number]) =>
      policies.some(
        (policy) =>
          JSON.stringify(policy.Properties.Roles).includes(
            logicalId(stack.functions[name].function.role as never),
          ) && JSON.stringify(policy).includes('acme-data/notebooks/*'),
      );
    for (const name of names) {
      const variables =
        functions[logicalId(stack.functions[name].function)]?.Properties.Environment.Variables;
      const reader = name === 'api' || name === 'mcp';
      expect(variables.NOTEBOOK_JOBS_TENANT_SOURCES, name).toBe(reader ? JSON.stringify(sources) : undefined);
      expect(readsSources(name), name).toBe(reader);
    }
    const statement = policies
      .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
      .find((s: any) => JSON.stringify(s.Resource).includes('acme-data'));
    expect(statement.Action).toBe('s3:GetObject');
    expect(JSON.stringify(statement.Resource)).toContain(':s3:::acme-data/notebooks/*');
    expect(JSON.stringify(statement.Resource)).toContain(':s3:::shared-nb/public/*');
    // Listing (files.uri s3:// folders): each source bucket, only under its allowed prefixes.
    const bucketArn = (bucket: string) => ({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:s3:::${bucket}`]],
    });
    for (const name of names) {
      const listings = statementsOf(template, stack.functions[name].function.role as IRole).filter(
        (s: any) => s.Action === 's3:ListBucket' && s.Condition,
      );
      const reader = name === 'api' || name === 'mcp';
      expect(listings, name).toEqual(
        reader
          ? [
              {
                Effect: 'Allow',
                Action: 's3:ListBucket',
                Resource: bucketArn('acme-data'),
                Condition: { StringLike: { 's3:prefix': ['notebooks/*', 'shared/*'] } },
              },
              {
                Effect: 'Allow',
                Action: 's3:ListBucket',
                Resource: bucketArn('shared-nb'),
                Condition: { StringLike: { 's3:prefix': ['public/*'] } },
              },
            ]
          : [],
      );
    }
  });

  it('give api, mcp, task-events and sweeper every service variable, and the authorizer only the table', () => {
    const { template, stack } = synth({ maxConcurrentJobs: '8', mcpAllowedOrigins: 'https://a.example.com' });
    const functions = template.findResources('AWS::Lambda::Function');
    const variables = (name: (typeof names)[number]) =>
      functions[logicalId(stack.functions[name].function)]?.Properties.Environment.Variables as Record<
        string,
        unknown
      >;
    const network = stack.node.findChild('Network');
    const shared = {
      NODE_OPTIONS: '--enable-source-maps',
      NOTEBOOK_JOBS_TABLE: ref(stack.table.table),
      NOTEBOOK_JOBS_BUCKET: ref(stack.artifacts.bucket),
      NOTEBOOK_JOBS_CURSOR_SECRET_ARN: ref(stack.node.findChild('CursorSecret')),
      NOTEBOOK_JOBS_EVENT_BUS: 'default',
      NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS: '8',
      NOTEBOOK_JOBS_RETENTION_DAYS: '30',
      NOTEBOOK_JOBS_CLUSTER: arnOf(stack.runner.cluster),
      // The family: RunTask starts its latest ACTIVE revision, whatever revision a deploy just made.
      NOTEBOOK_JOBS_TASK_DEFINITION: stack.runner.taskDefinition.family,
      NOTEBOOK_JOBS_CONTAINER: 'runner',
      NOTEBOOK_JOBS_SUBNETS: Match.anyValue(),
      NOTEBOOK_JOBS_SECURITY_GROUPS: {
        'Fn::GetAtt': [logicalId(network.node.findChild('TaskSecurityGroup')), 'GroupId'],
      },
      NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP: 'ENABLED',
      NOTEBOOK_JOBS_CAPACITY: 'FARGATE',
      NOTEBOOK_JOBS_LOG_GROUP: ref(stack.runner.logGroup),
      NOTEBOOK_JOBS_LOG_STREAM_PREFIX: 'runner',
    };
    for (const name of ['api', 'task-events', 'sweeper'] as const) {
      expect(Object.keys(variables(name)).sort(), name).toEqual(Object.keys(shared).sort());
      expect(variables(name), name).toMatchObject({ ...shared, NOTEBOOK_JOBS_SUBNETS: expect.anything() });
    }
    expect(variables('mcp')).toMatchObject({
      ...shared,
      NOTEBOOK_JOBS_SUBNETS: expect.anything(),
      NOTEBOOK_JOBS_ALLOWED_ORIGINS: 'https://a.example.com',
    });
    expect(variables('authorizer')).toEqual({
      NODE_OPTIONS: '--enable-source-maps',
      NOTEBOOK_JOBS_TABLE: ref(stack.table.table),
    });
  });

  it('launch into the public subnets of the created VPC by default, both of them', () => {
    const { template, stack } = synth();
    const vpc = stack.node.findChild('Network').node.findChild('Vpc');
    const publicSubnets = vpc.node.children.filter((child) => /^publicSubnet\d$/.test(child.node.id));
    expect(publicSubnets).toHaveLength(2);
    const fn = template.findResources('AWS::Lambda::Function')[logicalId(stack.functions.api.function)];
    expect(fn?.Properties.Environment.Variables.NOTEBOOK_JOBS_SUBNETS).toEqual({
      'Fn::Join': [',', publicSubnets.map((subnet) => ref(subnet))],
    });
  });

  it('ask for Fargate Spot when useFargateSpot is set', () => {
    const { template, stack } = synth({ useFargateSpot: 'true' });
    const fn = template.findResources('AWS::Lambda::Function')[logicalId(stack.functions.sweeper.function)];
    expect(fn?.Properties.Environment.Variables.NOTEBOOK_JOBS_CAPACITY).toBe('FARGATE_SPOT');
    template.hasResourceProperties('AWS::ECS::ClusterCapacityProviderAssociations', {
      CapacityProviders: ['FARGATE', 'FARGATE_SPOT'],
    });
  });
});

describe('network', () => {
  it('creates a 2-AZ VPC without NAT, with S3 and DynamoDB gateway endpoints and flow logs', () => {
    const { template } = synth();
    template.resourceCountIs('AWS::EC2::VPC', 1);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::Subnet', 2);
    template.resourceCountIs('AWS::EC2::VPCEndpoint', 2);
    for (const service of ['s3', 'dynamodb']) {
      template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
        VpcEndpointType: 'Gateway',
        ServiceName: { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, `.${service}`]] },
      });
    }
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', ResourceType: 'VPC' });
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: '-1' }],
      SecurityGroupIngress: Match.absent(),
    });
  });

  it('public egress: tasks get public IPs in public subnets, and no interface endpoint is paid for', () => {
    const { template, stack } = synth();
    template.resourceCountIs('AWS::EC2::InternetGateway', 1);
    template.resourcePropertiesCountIs('AWS::EC2::VPCEndpoint', { VpcEndpointType: 'Interface' }, 0);
    const fn = template.findResources('AWS::Lambda::Function')[logicalId(stack.functions.api.function)];
    expect(fn?.Properties.Environment.Variables.NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP).toBe('ENABLED');
  });

  it('private egress: isolated subnets, no NAT and no internet gateway, the endpoints the runner needs, HTTPS from tasks only', () => {
    const { template, stack } = synth({ egress: 'private' });
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::InternetGateway', 0);
    template.resourceCountIs('AWS::EC2::EIP', 0);
    template.resourceCountIs('AWS::EC2::Subnet', 2);
    // No subnet route leads anywhere but the VPC (and the gateway endpoints' prefix lists).
    for (const route of Object.values(template.findResources('AWS::EC2::Route')))
      expect(
        route.Properties.GatewayId ?? route.Properties.NatGatewayId,
        JSON.stringify(route),
      ).toBeUndefined();
    for (const subnet of Object.values(template.findResources('AWS::EC2::Subnet')))
      expect(subnet.Properties.MapPublicIpOnLaunch).toBe(false);

    const gateways = Object.values(
      template.findResources('AWS::EC2::VPCEndpoint', { Properties: { VpcEndpointType: 'Gateway' } }),
    );
    expect(gateways.map((e) => JSON.stringify(e.Properties.ServiceName)).sort()).toEqual(
      ['dynamodb', 's3'].map((service) =>
        JSON.stringify({ 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, `.${service}`]] }),
      ),
    );
    const interfaces = Object.values(
      template.findResources('AWS::EC2::VPCEndpoint', { Properties: { VpcEndpointType: 'Interface' } }),
    );
    expect(interfaces.map((e) => JSON.stringify(e.Properties.ServiceName)).sort()).toEqual(
      ['ecr.api', 'ecr.dkr', 'events', 'logs', 'sts']
        .map((service) =>
          JSON.stringify({ 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, `.${service}`]] }),
        )
        .sort(),
    );
    const endpointGroups = new Set(interfaces.map((e) => JSON.stringify(e.Properties.SecurityGroupIds)));
    expect(endpointGroups.size).toBe(1);
    for (const endpoint of interfaces) expect(endpoint.Properties.PrivateDnsEnabled).toBe(true);
    const taskGroup = logicalId(stack.node.findChild('Network').node.findChild('TaskSecurityGroup'));
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: 'notebook-jobs VPC interface endpoints: HTTPS from runner tasks only',
      SecurityGroupIngress: [
        {
          IpProtocol: 'tcp',
          FromPort: 443,
          ToPort: 443,
          SourceSecurityGroupId: { 'Fn::GetAtt': [taskGroup, 'GroupId'] },
          Description: 'HTTPS from runner tasks',
        },
      ],
    });
    const fn = template.findResources('AWS::Lambda::Function')[logicalId(stack.functions.api.function)];
    expect(fn?.Properties.Environment.Variables.NOTEBOOK_JOBS_ASSIGN_PUBLIC_IP).toBe('DISABLED');
  });
});

describe('IAM scope', () => {
  it('lets the api Lambda run only this task family, in this cluster, and pass only its two roles (and tag only while running)', () => {
    const { template, stack } = synth();
    const statements = statementsOf(template, stack.functions.api.function.role as IRole);
    const ecs = statements.filter((s) =>
      actionsOf(s).some((a) => a.startsWith('ecs:') || a === 'iam:PassRole'),
    );
    const inCluster = { ArnEquals: { 'ecs:cluster': arnOf(stack.runner.cluster) } };
    const tasksOfCluster = accountArn('ecs', ':task/', ref(stack.runner.cluster), '/*');
    const family = stack.runner.taskDefinition.family;
    expect(
      template.findResources('AWS::ECS::TaskDefinition')[logicalId(stack.runner.taskDefinition)],
    ).toMatchObject({ Properties: { Family: family } });
    expect(ecs).toEqual([
      {
        Effect: 'Allow',
        Action: 'ecs:RunTask',
        // Every revision of the one family (a deploy swaps revisions under a running service).
        Resource: accountArn('ecs', `:task-definition/${family}:*`),
        Condition: inCluster,
      },
      {
        Effect: 'Allow',
        Action: 'iam:PassRole',
        Resource: [arnOf(stack.runner.taskRole), arnOf(stack.runner.taskDefinition.obtainExecutionRole())],
        Condition: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      },
      {
        Effect: 'Allow',
        Action: ['ecs:StopTask', 'ecs:DescribeTasks'],
        Resource: tasksOfCluster,
        Condition: inCluster,
      },
      {
        Effect: 'Allow',
        Action: 'ecs:TagResource',
        Resource: tasksOfCluster,
        Condition: { StringEquals: { 'ecs:CreateAction': 'RunTask' } },
      },
    ]);
  });

  it('gives the launcher grants to api, mcp, task-events and sweeper only; the authorizer reads one item', () => {
    const { template, stack } = synth();
    for (const name of ['api', 'mcp', 'task-events', 'sweeper'] as const) {
      const actions = statementsOf(template, stack.functions[name].function.role as IRole).flatMap(actionsOf);
      expect(actions, name).toEqual(
        expect.arrayContaining(['ecs:RunTask', 'iam:PassRole', 'logs:GetLogEvents']),
      );
    }
    expect(statementsOf(template, stack.functions.authorizer.function.role as IRole)).toEqual([
      {
        Effect: 'Allow',
        Action: 'dynamodb:GetItem',
        Resource: arnOf(stack.table.table),
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['TOKEN#*'] } },
      },
    ]);
    // Nothing else in the stack may run tasks or pass roles.
    const runners = Object.values(template.findResources('AWS::IAM::Policy')).filter((policy) =>
      (policy.Properties.PolicyDocument.Statement as Statement[]).some((s) =>
        actionsOf(s).some((a) => a === 'ecs:RunTask' || a === 'iam:PassRole'),
      ),
    );
    expect(runners).toHaveLength(4);
  });

  it('lets the task role do one thing: assume the runner role', () => {
    const { template, stack } = synth();
    expect(statementsOf(template, stack.runner.taskRole)).toEqual([
      { Effect: 'Allow', Action: 'sts:AssumeRole', Resource: arnOf(stack.runner.runnerRole) },
    ]);
    // The runner role trusts exactly the task role, and sessions last at most the chaining limit.
    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          { Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { AWS: arnOf(stack.runner.taskRole) } },
        ],
      },
      MaxSessionDuration: 3600,
    });
    // RunTask passes the task role; nobody passes the runner role to a service.
    const passed = Object.values(template.findResources('AWS::IAM::Policy'))
      .flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[])
      .filter((s) => actionsOf(s).includes('iam:PassRole'))
      .map((s) => JSON.stringify(s.Resource));
    for (const resources of passed) expect(resources).not.toContain(logicalId(stack.runner.runnerRole));
  });

  it('gives the runner role job items, tenant settings, the input and output prefixes, job events and notebook roles', () => {
    const { template, stack } = synth();
    const bucket = arnOf(stack.artifacts.bucket);
    const objects = (prefix: string) => ({ 'Fn::Join': ['', [bucket, `/${prefix}*`]] });
    expect(statementsOf(template, stack.runner.runnerRole)).toEqual([
      {
        Effect: 'Allow',
        Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        Resource: arnOf(stack.table.table),
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['JOB#*'] } },
      },
      {
        Effect: 'Allow',
        Action: 'dynamodb:GetItem',
        Resource: arnOf(stack.table.table),
        Condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['TENANT#*'] } },
      },
      { Effect: 'Allow', Action: 's3:GetObject', Resource: objects('inputs/') },
      { Effect: 'Allow', Action: 's3:PutObject', Resource: objects('outputs/') },
      // The values of redacted parameters only; each session names its job's (job-credentials.ts).
      {
        Effect: 'Allow',
        Action: 's3:DeleteObject',
        Resource: { 'Fn::Join': ['', [bucket, '/inputs/*/redacted-parameters.json']] },
      },
      // Secrets under notebook-jobs/ only; each read is a session naming one secret of the tenant.
      {
        Effect: 'Allow',
        Action: 'secretsmanager:GetSecretValue',
        Resource: accountArn('secretsmanager', ':secret:notebook-jobs/*'),
      },
      {
        Effect: 'Allow',
        Action: 'ssm:GetParameter',
        Resource: accountArn('ssm', ':parameter/notebook-jobs/*'),
      },
      // SecureString values: decrypted only by Parameter Store, only for parameters under notebook-jobs/.
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: accountArn('kms', ':key/*'),
        Condition: {
          StringEquals: {
            'kms:ViaService': {
              'Fn::Join': ['', ['ssm.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }]],
            },
          },
          StringLike: {
            'kms:EncryptionContext:PARAMETER_ARN': accountArn('ssm', ':parameter/notebook-jobs/*'),
          },
        },
      },
      {
        Effect: 'Allow',
        Action: 'events:PutEvents',
        Resource: accountArn('events', ':event-bus/default'),
        Condition: {
          StringEquals: {
            'events:source': 'notebook-jobs',
            'events:detail-type': 'Notebook Job State Change',
          },
        },
      },
      {
        Effect: 'Allow',
        Action: 'sts:AssumeRole',
        Resource: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':iam::*:role/*']] },
      },
    ]);
  });

  it('limits the Lambdas to the bucket prefixes, the runner log streams and the cursor secret', () => {
    const { template, stack } = synth();
    const statements = statementsOf(template, stack.functions.mcp.function.role as IRole);
    const bucket = arnOf(stack.artifacts.bucket);
    expect(statements).toContainEqual({
      Effect: 'Allow',
      Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      Resource: ['inputs/', 'outputs/', 'uploads/'].map((prefix) => ({
        'Fn::Join': ['', [bucket, `/${prefix}*`]],
      })),
    });
    expect(statements).toContainEqual({
      Effect: 'Allow',
      Action: 'secretsmanager:GetSecretValue',
      Resource: ref(stack.node.findChild('CursorSecret')),
    });
    expect(statements).toContainEqual({
      Effect: 'Allow',
      Action: ['logs:GetLogEvents', 'logs:DeleteLogStream'],
      Resource: accountArn('logs', ':log-group:', ref(stack.runner.logGroup), ':log-stream:*'),
    });
    // No statement anywhere in the Lambda roles is Resource "*".
    for (const name of ['api', 'mcp', 'task-events', 'sweeper', 'authorizer'] as const) {
      for (const statement of statementsOf(template, stack.functions[name].function.role as IRole)) {
        expect([statement.Resource].flat(), `${name}: ${JSON.stringify(statement.Action)}`).not.toContain(
          '*',
        );
      }
    }
  });
});

describe('EventBridge', () => {
  it('sends ECS task STOPPED events of this cluster to task-events, with retries and a dead-letter queue', () => {
    const { template, stack } = synth();
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ecs'],
        'detail-type': ['ECS Task State Change'],
        detail: { clusterArn: [arnOf(stack.runner.cluster)], lastStatus: ['STOPPED'] },
      },
      State: 'ENABLED',
      Targets: [
        Match.objectLike({
          Arn: arnOf(stack.functions['task-events'].function),
          RetryPolicy: { MaximumRetryAttempts: 20, MaximumEventAgeInSeconds: 7200 },
          DeadLetterConfig: {
            Arn: Match.objectLike({ 'Fn::GetAtt': [Match.stringLikeRegexp('DeadLetters'), 'Arn'] }),
          },
        }),
      ],
    });
  });

  it('runs the sweeper every minute', () => {
    const { template, stack } = synth();
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      Targets: [
        Match.objectLike({
          Arn: arnOf(stack.functions.sweeper.function),
          RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 },
        }),
      ],
    });
  });

  it('copies job state-change events into the /aws/events/ log group the metric filters read', () => {
    const { template } = synth();
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['notebook-jobs'], 'detail-type': ['Notebook Job State Change'] },
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      LogGroupName: '/aws/events/Test/job-state-changes',
    });
    // EventBridge may write to the group (the document is a Fn::Join: it embeds the group's ARN).
    const policies = Object.values(template.findResources('AWS::Logs::ResourcePolicy'));
    expect(policies).toHaveLength(1);
    const document = JSON.stringify(policies[0]?.Properties.PolicyDocument);
    expect(document).toContain('\\"Service\\":\\"events.amazonaws.com\\"');
    expect(document).toContain('\\"Action\\":[\\"logs:CreateLogStream\\",\\"logs:PutLogEvents\\"]');
    for (const [name, filter] of Object.entries(JOB_METRIC_FILTERS)) {
      template.hasResourceProperties('AWS::Logs::MetricFilter', {
        FilterPattern: filter.pattern,
        MetricTransformations: [
          Match.objectLike({ MetricNamespace: 'NotebookJobs', MetricName: name, MetricValue: filter.value }),
        ],
      });
    }
  });
});

describe('REST API', () => {
  it('is regional, throttled, access-logged, with a cached REQUEST authorizer on the Authorization header', () => {
    const { template } = synth({ throttleRate: '20', throttleBurst: '40' });
    template.hasResourceProperties('AWS::ApiGateway::RestApi', {
      EndpointConfiguration: { Types: ['REGIONAL'] },
    });
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'api',
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }),
      MethodSettings: [
        Match.objectLike({ LoggingLevel: 'ERROR', ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40 }),
      ],
    });
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', {
      Type: 'REQUEST',
      IdentitySource: 'method.request.header.Authorization',
      AuthorizerResultTtlInSeconds: 60,
    });
  });

  it('routes /v1/{proxy+}, /openapi.json and /mcp through the authorizer, /v1/health without it', () => {
    const { template, stack } = synth();
    const methods = Object.values(template.findResources('AWS::ApiGateway::Method'));
    const resources = template.findResources('AWS::ApiGateway::Resource');
    const route = (method: (typeof methods)[number]) =>
      `${method.Properties.HttpMethod} ${resources[method.Properties.ResourceId.Ref]?.Properties.PathPart}`;
    const byRoute = Object.fromEntries(methods.map((method) => [route(method), method.Properties]));
    expect(Object.keys(byRoute).sort()).toEqual([
      'ANY mcp',
      'ANY {proxy+}',
      'GET health',
      'GET openapi.json',
    ]);
    for (const authorized of ['ANY mcp', 'ANY {proxy+}', 'GET openapi.json']) {
      expect(byRoute[authorized]?.AuthorizationType, authorized).toBe('CUSTOM');
    }
    expect(byRoute['GET health']?.AuthorizationType).toBe('NONE');
    const integrationTarget = (routeName: string) =>
      JSON.stringify(byRoute[routeName]?.Integration.Uri).includes(logicalId(stack.functions.mcp.function));
    expect(integrationTarget('ANY mcp')).toBe(true);
    expect(integrationTarget('ANY {proxy+}')).toBe(false);
  });

  it("leaves exactly the route table's public routes open: the stack agrees with the api Lambda", () => {
    const { template } = synth();
    const resources = template.findResources('AWS::ApiGateway::Resource');
    const pathOf = (id: string): string => {
      const resource = resources[id];
      if (!resource) return ''; // the API's root
      const parent = resource.Properties.ParentId as { Ref?: string };
      return `${parent.Ref ? pathOf(parent.Ref) : ''}/${resource.Properties.PathPart}`;
    };
    const methods = new Map(
      Object.values(template.findResources('AWS::ApiGateway::Method')).map((method) => [
        `${method.Properties.HttpMethod} ${pathOf(method.Properties.ResourceId.Ref)}`,
        method.Properties.AuthorizationType as string,
      ]),
    );
    // A route is served by a method of its own, else by the /v1 proxy.
    const authorizationOf = (route: Route) =>
      methods.get(`${route.method} ${route.path}`) ??
      (route.path.startsWith('/v1/') ? methods.get('ANY /v1/{proxy+}') : undefined);
    for (const route of ROUTES) {
      expect(authorizationOf(route), `${route.method} ${route.path}`).toBe(
        route.public === undefined ? 'CUSTOM' : 'NONE',
      );
    }
    expect(PUBLIC_ROUTES).toEqual(new Set(['GET /v1/health']));
  });

  it('answers gateway errors in the service error shape', () => {
    const { template } = synth();
    // The catch-alls keep API Gateway's own status (a 415 stays a 415).
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'DEFAULT_4XX',
      StatusCode: Match.absent(),
    });
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
      ResponseType: 'UNAUTHORIZED',
      StatusCode: '401',
      ResponseTemplates: {
        'application/json': '{"error":{"code":"unauthorized","message":$context.error.messageString}}',
      },
    });
  });

  it("answers a body too large for Lambda (API Gateway's own error) with JSON naming POST /v1/uploads", () => {
    const { template } = synth();
    const body = (type: string) => {
      const found = Object.values(
        template.findResources('AWS::ApiGateway::GatewayResponse', { Properties: { ResponseType: type } }),
      );
      expect(found, type).toHaveLength(1);
      const properties = found[0]?.Properties as {
        StatusCode: string;
        ResponseTemplates: Record<string, string>;
      };
      // The template is the JSON body itself (no $context in it): it must parse as the error shape.
      return {
        status: properties.StatusCode,
        json: JSON.parse(properties.ResponseTemplates['application/json'] as string),
      };
    };
    const hint = `send notebooks larger than ${MAX_REQUEST_BODY_BYTES} bytes with POST /v1/uploads (a presigned upload) and submit the notebook_uri it returns`;
    expect(body('REQUEST_TOO_LARGE')).toEqual({
      status: '413',
      json: {
        error: { code: 'payload_too_large', message: `the request is too large for this API: ${hint}` },
      },
    });
    // A crashed or throttled function ends here too: still a 5xx (the API 5XX alarm counts it).
    expect(body('INTEGRATION_FAILURE')).toEqual({
      status: '502',
      json: {
        error: {
          code: 'integration_failed',
          message: `the API could not run this request (a request body over ${MAX_REQUEST_BODY_BYTES} bytes can be more than the function takes): ${hint}`,
        },
      },
    });
  });

  it('adds a CORS preflight to /mcp only for configured browser origins', () => {
    const count = (template: Template) =>
      Object.keys(
        template.findResources('AWS::ApiGateway::Method', { Properties: { HttpMethod: 'OPTIONS' } }),
      ).length;
    expect(count(synth().template)).toBe(0);
    expect(count(synth({ mcpAllowedOrigins: 'https://app.example.com' }).template)).toBe(1);
  });
});

describe('observability and outputs', () => {
  it('has the dashboard and the eight alarms, mailed when alarmEmail is set', () => {
    const { template } = synth({ alarmEmail: 'ops@example.com' });
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 8);
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
    for (const alarm of alarms) expect(alarm.Properties.AlarmActions).toHaveLength(1);
    const expressions = alarms.flatMap((alarm) =>
      ((alarm.Properties.Metrics ?? []) as { Expression?: string }[])
        .map((m) => m.Expression)
        .filter(Boolean),
    );
    expect(expressions).toEqual(
      expect.arrayContaining([
        'IF((FILL(completed, 0) + FILL(failed, 0)) >= 5, 100 * FILL(failed, 0) / (FILL(completed, 0) + FILL(failed, 0)), 0)',
        'IF(FILL(queued, 0) > 0 AND FILL(running, 0) < 5 AND FILL(started, 0) == 0, 1, 0)',
        // e4 is the authorizer: its refusals (401s) are subtracted.
        'FILL(e0, 0) + FILL(e1, 0) + FILL(e2, 0) + FILL(e3, 0) + IF(FILL(e4, 0) - FILL(denied, 0) > 0, FILL(e4, 0) - FILL(denied, 0), 0)',
        'IF(FILL(requests, 0) >= 20, 100 * FILL(errors, 0) / requests, 0)',
      ]),
    );
    expect(Object.keys(synth().template.findResources('AWS::SNS::Topic'))).toHaveLength(0);
  });

  it('exports the API, MCP, bucket, table and dashboard', () => {
    const { template } = synth();
    for (const output of ['ApiUrl', 'McpUrl', 'BucketName', 'TableName', 'DashboardUrl']) {
      template.hasOutput(output, { Value: Match.anyValue() });
    }
  });
});

describe('alarms', () => {
  /** The alarm with this construct id (under Observability). */
  function alarm(template: Template, stack: NotebookJobsStack, id: string) {
    const construct = stack.node.findChild('Observability').node.findChild(id);
    const found = template.findResources('AWS::CloudWatch::Alarm')[logicalId(construct)];
    if (!found) throw new Error(`no alarm ${id}`);
    return found.Properties as Record<string, any>;
  }
  const metricsOf = (properties: Record<string, any>) =>
    Object.fromEntries(
      (properties.Metrics as { Id: string; MetricStat?: { Metric: unknown; Stat: string } }[])
        .filter((m) => m.MetricStat)
        .map((m) => [m.Id, { ...(m.MetricStat?.Metric as object), stat: m.MetricStat?.Stat }]),
    );

  it('Api5xxRate: more than 5% of at least 20 requests answered 5XX, in two of three 5-minute periods', () => {
    const { template, stack } = synth();
    const properties = alarm(template, stack, 'Api5xxRate');
    expect(properties).toMatchObject({
      Threshold: 5,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 2,
      TreatMissingData: 'notBreaching',
    });
    const apiName = { Name: 'ApiName', Value: 'RestApi' };
    expect(metricsOf(properties)).toEqual({
      requests: { Namespace: 'AWS/ApiGateway', MetricName: 'Count', Dimensions: [apiName], stat: 'Sum' },
      errors: { Namespace: 'AWS/ApiGateway', MetricName: '5XXError', Dimensions: [apiName], stat: 'Sum' },
    });
    // The gateway reports under the API's name: the dimension must be the name the stack gives it.
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'RestApi' });
  });

  it('ApiLatency: p99 at 28 s or more (near the 29 s gateway limit) in two of three 5-minute periods', () => {
    const { template, stack } = synth();
    expect(alarm(template, stack, 'ApiLatency')).toMatchObject({
      Namespace: 'AWS/ApiGateway',
      MetricName: 'Latency',
      ExtendedStatistic: 'p99',
      Period: 300,
      Threshold: 28_000,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 2,
    });
  });

  it('LaunchFailures: any job failed by the platform (error.type infrastructure) in 5 minutes', () => {
    const { template, stack } = synth();
    expect(alarm(template, stack, 'LaunchFailures')).toMatchObject({
      Namespace: 'NotebookJobs',
      MetricName: 'JobsFailedInfrastructure',
      Statistic: 'Sum',
      Period: 300,
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    });
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      FilterPattern: '{ ($.detail.status = "failed") && ($.detail.error.type = "infrastructure") }',
      MetricTransformations: [Match.objectLike({ MetricName: 'JobsFailedInfrastructure' })],
    });
  });

  it('SweeperHeartbeat: no sweep gauge for two 5-minute periods, missing data counting as breaching', () => {
    const { template, stack } = synth();
    expect(alarm(template, stack, 'SweeperHeartbeat')).toMatchObject({
      Namespace: 'NotebookJobs',
      MetricName: 'JobsQueued',
      Statistic: 'SampleCount',
      Period: 300,
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      EvaluationPeriods: 2,
      TreatMissingData: 'breaching',
    });
  });

  it("counts the authorizer's refusals from its own log group, with a pattern that matches what it logs", async () => {
    const { template, stack } = synth();
    template.hasResourceProperties('AWS::Logs::MetricFilter', {
      LogGroupName: ref(stack.functions.authorizer.logGroup),
      FilterPattern: AUTHORIZER_DENIAL_PATTERN,
      MetricTransformations: [
        { MetricNamespace: 'NotebookJobs', MetricName: 'AuthorizerDenials', MetricValue: '1' },
      ],
    });
    // A request without a token: the authorizer throws Unauthorized (API Gateway's 401) and logs
    // the refusal as JSON whose message the pattern's `denied:*` matches.
    const lines: string[] = [];
    const spy = vi.spyOn(authorizerLogger, 'info').mockImplementation((...args: unknown[]) => {
      lines.push(String(args[0]));
    });
    try {
      await expect(
        authorize({ headers: {}, multiValueHeaders: {}, path: '/v1/jobs' } as never),
      ).rejects.toThrow('Unauthorized');
    } finally {
      spy.mockRestore();
    }
    const prefix = /^\{ \$\.message = "(.*)\*" \}$/.exec(AUTHORIZER_DENIAL_PATTERN)?.[1];
    expect(prefix).toBe('denied:');
    expect(lines).toHaveLength(1);
    expect(lines[0]?.startsWith(prefix as string)).toBe(true);
  });
});

describe('sweeper, default security group and tracing', () => {
  it('runs one sweep at a time: reserved concurrency 1, a throttled schedule event dropped after a minute', () => {
    const { template, stack } = synth();
    const functions = template.findResources('AWS::Lambda::Function');
    for (const [name, house] of Object.entries(stack.functions)) {
      const reserved = functions[logicalId(house.function)]?.Properties.ReservedConcurrentExecutions;
      expect(reserved, name).toBe(name === 'sweeper' ? 1 : undefined);
    }
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: ref(stack.functions.sweeper.function),
      MaximumRetryAttempts: 0,
      MaximumEventAgeInSeconds: 60,
    });
  });

  it("removes the rules of the created VPC's default security group", () => {
    const { template, stack } = synth();
    const vpc = stack.node.findChild('Network').node.findChild('Vpc');
    template.hasResourceProperties('Custom::VpcRestrictDefaultSG', {
      DefaultSecurityGroupId: { 'Fn::GetAtt': [logicalId(vpc), 'DefaultSecurityGroup'] },
    });
  });

  it('traces nothing by default, and every Lambda and the API stage with context tracing', () => {
    const off = synth().template;
    for (const fn of Object.values(off.findResources('AWS::Lambda::Function')))
      expect(fn.Properties.TracingConfig).toBeUndefined();
    off.hasResourceProperties('AWS::ApiGateway::Stage', { TracingEnabled: false });

    const { template, stack } = synth({ tracing: 'true' });
    template.hasResourceProperties('AWS::ApiGateway::Stage', { TracingEnabled: true });
    const functions = template.findResources('AWS::Lambda::Function');
    for (const [name, house] of Object.entries(stack.functions)) {
      expect(functions[logicalId(house.function)]?.Properties.TracingConfig, name).toEqual({
        Mode: 'Active',
      });
      expect(statementsOf(template, house.function.role as IRole), name).toContainEqual({
        Effect: 'Allow',
        Action: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'],
        Resource: '*',
      });
    }
  });
});
