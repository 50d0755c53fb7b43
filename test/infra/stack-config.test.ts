/**
 * Deployment settings from CDK context: defaults, values as cdk.json (JSON types) and `-c key=value`
 * (strings) give them, and a clear error naming the key and what is allowed for anything else.
 */
import { App } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { readStackConfig, StackConfigError } from '../../lib/stack-config.ts';

const read = (context: Record<string, unknown>) => readStackConfig(new App({ context }).node);

describe('readStackConfig', () => {
  it('has a documented default for every key', () => {
    expect(read({})).toEqual({
      vpcId: undefined,
      egress: 'public',
      taskCpu: 1024,
      taskMemory: 4096,
      taskArchitecture: 'arm64',
      maxConcurrentJobs: 5,
      retentionDays: 30,
      logRetentionDays: 30,
      useFargateSpot: false,
      warmRunners: 0,
      mcpAllowedOrigins: [],
      throttleRate: 50,
      throttleBurst: 100,
      alarmEmail: undefined,
      removalPolicy: 'retain',
      webAclArn: undefined,
      tenantSources: {},
      tracing: false,
      oauth: null,
    });
  });

  it('reads tenant sources as JSON text or an object, and refuses prefixes that are not plain s3:// folders', () => {
    const sources = { acme: ['s3://acme-data/notebooks/'], '*': ['s3://shared-nb/public/'] };
    expect(read({ tenantSources: JSON.stringify(sources) }).tenantSources).toEqual(sources);
    expect(read({ tenantSources: sources }).tenantSources).toEqual(sources);
    for (const bad of [
      '{"acme": "s3://a/b/"}',
      '{"acme": ["s3://a/b"]}',
      '{"acme": ["https://a/b/"]}',
      '[1]',
    ]) {
      expect(() => read({ tenantSources: bad }), bad).toThrow(/context tenantSources/);
    }
  });

  it('reads command-line strings and cdk.json values alike', () => {
    const fromCli = read({
      vpcId: 'vpc-0123456789abcdef0',
      egress: 'private',
      taskCpu: '2048',
      taskMemory: '16384',
      taskArchitecture: 'x86_64',
      maxConcurrentJobs: '12',
      retentionDays: '7',
      logRetentionDays: '14',
      useFargateSpot: 'true',
      mcpAllowedOrigins: 'https://app.example.com, http://localhost:5173',
      throttleRate: '10',
      throttleBurst: '20',
      alarmEmail: 'ops@example.com',
      removalPolicy: 'destroy',
      webAclArn: 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/jobs/abc',
      tracing: 'true',
    });
    const fromJson = read({
      vpcId: 'vpc-0123456789abcdef0',
      egress: 'private',
      taskCpu: 2048,
      taskMemory: 16384,
      taskArchitecture: 'x86_64',
      maxConcurrentJobs: 12,
      retentionDays: 7,
      logRetentionDays: 14,
      useFargateSpot: true,
      mcpAllowedOrigins: ['https://app.example.com', 'http://localhost:5173'],
      throttleRate: 10,
      throttleBurst: 20,
      alarmEmail: 'ops@example.com',
      removalPolicy: 'destroy',
      webAclArn: 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/jobs/abc',
      tracing: true,
    });
    expect(fromCli).toEqual(fromJson);
    expect(fromCli).toMatchObject({
      taskCpu: 2048,
      taskMemory: 16384,
      useFargateSpot: true,
      mcpAllowedOrigins: ['https://app.example.com', 'http://localhost:5173'],
      logRetentionDays: 14,
      tracing: true,
    });
  });

  it.each([
    [
      { taskCpu: '300' },
      'context taskCpu/taskMemory: cpu 300 is not a Fargate size; cpu must be one of 256, 512, 1024, 2048, 4096, 8192, 16384',
    ],
    [
      { taskCpu: '512', taskMemory: '512' },
      'context taskCpu/taskMemory: memory 512 MiB does not fit cpu 512 on Fargate; with cpu 512 memory must be 1024-4096 in steps of 1024 MiB',
    ],
    [{ taskMemory: 'lots' }, 'context taskMemory must be an integer from 512 to 122880, got "lots"'],
    [{ maxConcurrentJobs: '2.5' }, 'context maxConcurrentJobs must be an integer from 1 to 1000, got "2.5"'],
    [{ retentionDays: 0 }, 'context retentionDays must be an integer from 1 to 3650, got 0'],
    [
      { logRetentionDays: '10' },
      'context logRetentionDays must be a CloudWatch Logs retention (1, 3, 5, 7, 14, 30',
    ],
    [{ useFargateSpot: 'yes' }, 'context useFargateSpot must be true or false, got "yes"'],
    [{ tracing: 'on' }, 'context tracing must be true or false, got "on"'],
    [{ egress: 'isolated' }, 'context egress must be one of public, private, got "isolated"'],
    [{ taskSubnets: 'private' }, 'context taskSubnets was replaced by egress (public | private)'],
    [{ taskArchitecture: 'arm' }, 'context taskArchitecture must be one of arm64, x86_64, got "arm"'],
    [{ removalPolicy: 'delete' }, 'context removalPolicy must be one of retain, destroy, got "delete"'],
    [{ vpcId: 'default' }, 'context vpcId must look like vpc-0123456789abcdef0, got "default"'],
    [{ alarmEmail: 'ops' }, 'context alarmEmail must be an email address, got "ops"'],
    [
      { mcpAllowedOrigins: 'https://app.example.com/mcp' },
      'context mcpAllowedOrigins entries must be origins like https://app.example.com',
    ],
    [{ mcpAllowedOrigins: 'app.example.com' }, 'got "app.example.com"'],
    [
      { mcpAllowedOrigins: { origin: 'x' } },
      'context mcpAllowedOrigins must be a list of origins or a comma-separated string',
    ],
    [
      { webAclArn: 'arn:aws:wafv2:us-east-1:123456789012:global/webacl/x/1' },
      'context webAclArn must be a regional WAFv2 web ACL ARN',
    ],
    [{ throttleBurst: -1 }, 'context throttleBurst must be an integer from 1 to 5000, got -1'],
  ])('rejects %j, naming the key and what is allowed', (context, message) => {
    expect(() => read(context)).toThrow(StackConfigError);
    expect(() => read(context)).toThrow(message);
  });

  it('accepts Fargate CPU/memory pairs and rejects others, with the rule the launcher applies per job', () => {
    for (const [cpu, memory] of [
      [256, 512],
      [256, 2048],
      [512, 4096],
      [1024, 2048],
      [4096, 30720],
      [8192, 20480],
      [16384, 122880],
    ] as const) {
      expect(read({ taskCpu: cpu, taskMemory: memory })).toMatchObject({ taskCpu: cpu, taskMemory: memory });
    }
    for (const [cpu, memory] of [
      [256, 4096],
      [1024, 1024],
      [8192, 17408],
      [768, 2048],
    ] as const) {
      expect(() => read({ taskCpu: cpu, taskMemory: memory })).toThrow(StackConfigError);
      expect(() => read({ taskCpu: cpu, taskMemory: memory })).toThrow(
        /^context taskCpu\/taskMemory: .*Fargate/,
      );
    }
  });
});
