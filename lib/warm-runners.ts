/**
 * The warm runner pool (stack setting `warmRunners` > 0): an ECS service of that many tasks of the
 * runner task definition, started without a job. Each starts the default kernel, registers itself
 * idle in the job table and waits for the dispatcher's offer (container/runner/warm-runner.ts,
 * docs/architecture.md "Warm runners (AWS)"); it runs one job and exits, and the service starts a
 * replacement; while it runs its job it is protected from scale-in (a deployment waits for it). The
 * Lambdas learn the pool's kernel from NOTEBOOK_JOBS_WARM_KERNEL and offer matching
 * jobs before they call RunTask.
 */
import { Stack } from 'aws-cdk-lib';
import { FargateService } from 'aws-cdk-lib/aws-ecs';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { WARM_KERNEL_VARIABLE, warmPartitionKey } from '../lambda/adapters/dynamodb/warm-runners.ts';
import type { HouseFunction } from './house-function.ts';
import { acknowledgeWildcardResources } from './nag-acknowledgements.ts';
import type { Network } from './network.ts';
import type { RunnerTask } from './runner-task.ts';

/** The kernel warm runners start: the default kernel of the image (lambda/aws/wiring.ts). */
export const WARM_KERNEL = 'python3';

export interface WarmRunnersProps {
  readonly runner: RunnerTask;
  readonly network: Network;
  readonly table: ITable;
  /** Tasks kept running (idle ones wait for a job; each runs one job and is replaced). */
  readonly count: number;
  readonly useFargateSpot: boolean;
}

export class WarmRunners extends Construct {
  readonly service: FargateService;

  constructor(scope: Construct, id: string, props: WarmRunnersProps) {
    super(scope, id);
    const { runner, network } = props;
    // Set on the one runner container: a RunTask names a job and runs cold as before; a service
    // task has none and waits warm for this kernel (container/runner/main.ts).
    runner.container.addEnvironment(WARM_KERNEL_VARIABLE, WARM_KERNEL);
    // What a waiting runner's session may reach (job-credentials.ts warmSessionPolicy): the pool's
    // own items. Claiming and running a job uses that job's session, as for any runner.
    runner.runnerRole.addToPolicy(
      new PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
        resources: [props.table.tableArn],
        conditions: {
          'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': [warmPartitionKey(WARM_KERNEL)] },
        },
      }),
    );
    // Scale-in protection while a warm task runs its job (container/runner/warm-runner.ts
    // protectTask): the agent endpoint acts with the task role. Tasks of this cluster only.
    const tasks = Stack.of(this).formatArn({
      service: 'ecs',
      resource: 'task',
      resourceName: `${runner.cluster.clusterName}/*`,
    });
    runner.taskRole.addToPolicy(
      new PolicyStatement({
        actions: ['ecs:UpdateTaskProtection'],
        resources: [tasks],
        conditions: { ArnEquals: { 'ecs:cluster': runner.cluster.clusterArn } },
      }),
    );
    acknowledgeWildcardResources(
      runner.taskRole,
      [tasks],
      'A warm task protects itself from scale-in while it runs a job; its task id is only known at run time, so the grant covers tasks of this one cluster.',
    );
    this.service = new FargateService(this, 'Service', {
      cluster: runner.cluster,
      taskDefinition: runner.taskDefinition,
      desiredCount: props.count,
      // The same network as job tasks: a public IP only where the egress setting gives job tasks
      // one (public subnets, no NAT); private egress has none.
      vpcSubnets: network.taskSubnets,
      securityGroups: [network.taskSecurityGroup],
      assignPublicIp: network.assignPublicIp,
      capacityProviderStrategies: [
        { capacityProvider: props.useFargateSpot ? 'FARGATE_SPOT' : 'FARGATE', weight: 1 },
      ],
      // A deployment starts the new tasks before it stops old ones, so the pool never runs dry; it
      // does not stop a task running a job (scale-in protection) unless the protection (48 h) ends.
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      // A deployment that keeps failing (tasks die before their kernel is ready) stops retrying.
      circuitBreaker: { enable: true, rollback: false },
      enableECSManagedTags: true,
    });
  }

  /** Tells a Lambda which kernel the pool has, so it offers matching jobs before RunTask. */
  bindDispatcher(fn: HouseFunction): void {
    fn.addEnvironment(WARM_KERNEL_VARIABLE, WARM_KERNEL);
  }
}
