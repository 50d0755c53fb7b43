/**
 * The warm runner pool in the synthesized stack (lib/warm-runners.ts): with `warmRunners` > 0 an
 * ECS service of that many runner tasks (the job task definition, the job tasks' network, a public
 * IP only with public egress), the pool's kernel for the runner container and the dispatching
 * Lambdas, and the runner role's grant on the pool's items; with 0 (the default) none of it.
 * cdk-nag for both is in cdk-nag.test.ts.
 */
import { readFileSync } from 'node:fs';
import { App, Stack, type CfnElement } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { NotebookJobsStack } from '../../lib/notebook-jobs-stack.ts';
import { readStackConfig, StackConfigError } from '../../lib/stack-config.ts';

const CDK_JSON = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context: Record<string, unknown>;
};

function synth(context: Record<string, unknown>) {
  const app = new App({ context: { ...CDK_JSON.context, 'aws:cdk:bundling-stacks': [], ...context } });
  const stack = new NotebookJobsStack(app, 'Test', { config: readStackConfig(app.node) });
  return { stack, template: Template.fromStack(stack) };
}

const ref = (construct: IConstruct) => ({
  Ref: Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement),
});

const WARM_ITEMS = Match.objectLike({
  Action: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
  Condition: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['WARM#python3'] } },
});

describe('warm runners in the stack', () => {
  it('adds nothing with warmRunners 0 (the default)', () => {
    const { template } = synth({});
    template.resourceCountIs('AWS::ECS::Service', 0);
    const text = JSON.stringify(template.toJSON());
    expect(text).not.toContain('NOTEBOOK_JOBS_WARM_KERNEL');
    expect(text).not.toContain('WARM#');
    expect(text).not.toContain('WarmRunnersIdle');
    expect(text).not.toContain('ecs:UpdateTaskProtection');
  });

  it('runs that many runner tasks as a service of the job task definition, without a public IP on private egress', () => {
    const { stack, template } = synth({ warmRunners: 3, egress: 'private' });
    template.resourceCountIs('AWS::ECS::Service', 1);
    template.hasResourceProperties('AWS::ECS::Service', {
      Cluster: ref(stack.runner.cluster),
      TaskDefinition: ref(stack.runner.taskDefinition),
      DesiredCount: 3,
      CapacityProviderStrategy: [{ CapacityProvider: 'FARGATE', Weight: 1 }],
      NetworkConfiguration: {
        AwsvpcConfiguration: Match.objectLike({
          AssignPublicIp: 'DISABLED',
          SecurityGroups: [
            { 'Fn::GetAtt': [Match.stringLikeRegexp('^NetworkTaskSecurityGroup'), 'GroupId'] },
          ],
        }),
      },
      DeploymentConfiguration: Match.objectLike({ MinimumHealthyPercent: 100, MaximumPercent: 200 }),
    });
    // One task definition: the runner's (a service task differs only by having no job).
    template.resourceCountIs('AWS::ECS::TaskDefinition', 1);
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          Name: 'runner',
          Environment: Match.arrayWith([{ Name: 'NOTEBOOK_JOBS_WARM_KERNEL', Value: 'python3' }]),
        }),
      ],
    });
    // The dispatching Lambdas offer python3 jobs to the pool; the authorizer does not dispatch.
    for (const name of ['api', 'mcp', 'task-events', 'sweeper'] as const) {
      const fn = stack.functions[name].function.node.defaultChild as CfnElement;
      expect(
        template.toJSON().Resources[Stack.of(stack).getLogicalId(fn)].Properties.Environment.Variables
          .NOTEBOOK_JOBS_WARM_KERNEL,
        name,
      ).toBe('python3');
    }
    const authorizer = stack.functions.authorizer.function.node.defaultChild as CfnElement;
    expect(
      template.toJSON().Resources[Stack.of(stack).getLogicalId(authorizer)].Properties.Environment.Variables
        .NOTEBOOK_JOBS_WARM_KERNEL,
    ).toBeUndefined();
    // The dashboard plots the sweeper's idle-runner gauge.
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(JSON.stringify(dashboards)).toContain('WarmRunnersIdle');
    // The task role may protect its task (and only tasks of this cluster) while it runs a job.
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [ref(stack.runner.taskRole)],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: 'ecs:UpdateTaskProtection',
            Condition: { ArnEquals: { 'ecs:cluster': Match.anyValue() } },
          }),
        ]),
      },
    });
    // The runner role may reach the pool's items (each waiting runner narrows it to them).
    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [ref(stack.runner.runnerRole)],
      PolicyDocument: { Statement: Match.arrayWith([WARM_ITEMS]) },
    });
  });

  it('gives warm tasks a public IP exactly where job tasks get one (public egress), and Spot when jobs use it', () => {
    const { template } = synth({ warmRunners: '1', useFargateSpot: true });
    template.hasResourceProperties('AWS::ECS::Service', {
      DesiredCount: 1,
      CapacityProviderStrategy: [{ CapacityProvider: 'FARGATE_SPOT', Weight: 1 }],
      NetworkConfiguration: { AwsvpcConfiguration: Match.objectLike({ AssignPublicIp: 'ENABLED' }) },
    });
  });

  it.each([-1, 101, 'two', 1.5])('refuses warmRunners %j', (value) => {
    expect(() => readStackConfig(new App({ context: { warmRunners: value } }).node)).toThrow(
      new StackConfigError(
        `context warmRunners must be an integer from 0 to 100, got ${JSON.stringify(value)}`,
      ),
    );
  });
});
