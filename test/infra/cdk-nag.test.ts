/**
 * cdk-nag AwsSolutions over the stack as `cdk synth` builds it (cdk.json's feature flags), for the
 * default settings and the variants that add or remove resources. Zero unacknowledged findings;
 * every acknowledgement carries a reason.
 */
import { readFileSync } from 'node:fs';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { NotebookJobsStack } from '../../lib/notebook-jobs-stack.ts';
import { readStackConfig } from '../../lib/stack-config.ts';

const CDK_JSON = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context: Record<string, unknown>;
};

function buildStack(context: Record<string, unknown> = {}, env?: { account: string; region: string }) {
  const app = new App({
    context: { ...CDK_JSON.context, 'aws:cdk:bundling-stacks': [], ...context },
  });
  const stack = new NotebookJobsStack(app, 'NagTest', { config: readStackConfig(app.node), env });
  return { app, stack };
}

function violationsOf(scope: IConstruct): string[] {
  const report = new AwsSolutionsChecks().validateScope(scope);
  return report.violations.map(
    (violation) =>
      `${violation.ruleName}: ${violation.violatingResources.map((r) => r.constructPath).join(', ')}`,
  );
}

describe('cdk-nag AwsSolutions', () => {
  it('finds nothing unacknowledged in the default stack', () => {
    const { stack } = buildStack();
    expect(violationsOf(stack)).toEqual([]);
  });

  it.each([
    ['alarm email (SNS topic)', { alarmEmail: 'ops@example.com' }],
    ['removalPolicy destroy (auto-delete custom resource)', { removalPolicy: 'destroy' }],
    ['private egress (isolated subnets, VPC endpoints)', { egress: 'private' }],
    ['x86_64 tasks on Fargate Spot', { taskArchitecture: 'x86_64', useFargateSpot: true }],
    ['MCP browser origins (CORS preflight)', { mcpAllowedOrigins: 'https://app.example.com' }],
    ['X-Ray tracing', { tracing: 'true' }],
    ['warm runners', { warmRunners: 2 }],
    [
      'warm runners with private egress on Fargate Spot',
      { warmRunners: '3', egress: 'private', useFargateSpot: true },
    ],
    ['tenant notebook sources', { tenantSources: '{"acme": ["s3://acme-data/notebooks/"]}' }],
    [
      'a WAF web ACL',
      { webAclArn: 'arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/notebook-jobs/abc' },
    ],
  ])('finds nothing unacknowledged with %s', (_name, context) => {
    const { stack } = buildStack(context);
    expect(violationsOf(stack)).toEqual([]);
  });

  it('finds nothing unacknowledged with an existing VPC (vpcId lookup)', () => {
    const { stack } = buildStack(
      { vpcId: 'vpc-0123456789abcdef0' },
      { account: '123456789012', region: 'eu-west-1' },
    );
    expect(violationsOf(stack)).toEqual([]);
  });

  it('still reports a real finding: the check is live, not silenced wholesale', () => {
    const { stack } = buildStack();
    // Remove one acknowledged property and expect its rule back.
    const table = stack.table.table.node.defaultChild as { pointInTimeRecoverySpecification?: unknown };
    table.pointInTimeRecoverySpecification = undefined;
    expect(violationsOf(stack)).toEqual([expect.stringMatching(/^AwsSolutions-DDB3: /)]);
  });

  it('gives every acknowledgement a reason, and none is stale (each matches a real finding)', () => {
    for (const context of [{}, { alarmEmail: 'ops@example.com', removalPolicy: 'destroy' }]) {
      const { stack } = buildStack(context);
      const acknowledged = acknowledgementsOf(stack);
      expect(acknowledged.length).toBeGreaterThan(10);
      for (const { rule, reason } of acknowledged) {
        expect(reason.split(/\s+/).length, `reason for ${rule}`).toBeGreaterThanOrEqual(8);
      }
      // Every finding the rules raise before acknowledgements are applied, by construct path.
      const checks = new AwsSolutionsChecks();
      (checks as unknown as { isAcknowledged: () => boolean }).isAcknowledged = () => false;
      const raw = checks.validateScope(stack).violations.flatMap((violation) =>
        violation.violatingResources.map((resource) => ({
          rule: violation.ruleName,
          path: resource.constructPath ?? '',
        })),
      );
      for (const { rule, path } of acknowledged) {
        const matched = raw.some(
          (finding) =>
            finding.rule === rule && (finding.path === path || finding.path.startsWith(`${path}/`)),
        );
        expect(matched, `acknowledgement ${rule} on ${path} matches no finding`).toBe(true);
      }
    }
  });
});

/** The AwsSolutions acknowledgements in a stack: rule id, reason and the construct they are on. */
function acknowledgementsOf(stack: NotebookJobsStack): { rule: string; reason: string; path: string }[] {
  return stack.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) => Object.entries(entry.data as Record<string, string>))
      .map(([rule, reason]) => ({
        rule: rule.replace(/^annotation::/i, ''),
        reason,
        path: construct.node.path,
      }))
      .filter(({ rule }) => rule.startsWith('AwsSolutions-')),
  );
}
