/**
 * What keeps job records true to the tasks behind them: every ECS task of this cluster that stops
 * is delivered to task-events (which fails a job whose runner died, frees its slot and dispatches
 * the next), and sweeper runs every minute (deadlines, slot leaks, queued retries, vanished tasks).
 * A task-events invocation that fails every retry lands in a dead-letter queue; the sweeper
 * repairs the same job within minutes anyway, so a lost event delays a job's ending, never loses it.
 */
import { Duration } from 'aws-cdk-lib';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { ICluster } from 'aws-cdk-lib/aws-ecs';
import { Construct } from 'constructs';
import type { HouseFunction } from './house-function.ts';

export interface ReconciliationProps {
  readonly cluster: ICluster;
  readonly taskEvents: HouseFunction;
  readonly sweeper: HouseFunction;
  /** Also task-events' own dead-letter queue (asynchronous invocations that failed every retry). */
  readonly deadLetterQueue: Queue;
}

/** The ECS task-stopped rule, the sweep schedule and the task-events dead-letter queue. */
export class Reconciliation extends Construct {
  readonly taskStoppedRule: Rule;
  readonly sweepSchedule: Rule;

  constructor(scope: Construct, id: string, props: ReconciliationProps) {
    super(scope, id);
    this.taskStoppedRule = new Rule(this, 'TaskStopped', {
      description: 'notebook-jobs: a runner task of this cluster stopped',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: { clusterArn: [props.cluster.clusterArn], lastStatus: ['STOPPED'] },
      },
      targets: [
        new LambdaFunction(props.taskEvents.function, {
          // Delivery retries (throttling, Lambda unavailable) for up to two hours, then the queue.
          retryAttempts: 20,
          maxEventAge: Duration.hours(2),
          deadLetterQueue: props.deadLetterQueue,
        }),
      ],
    });
    this.sweepSchedule = new Rule(this, 'SweepSchedule', {
      description: 'notebook-jobs: reconcile jobs with their tasks every minute',
      schedule: Schedule.rate(Duration.minutes(1)),
      // A missed sweep is made up by the next one a minute later: no retries, no stale sweeps.
      targets: [
        new LambdaFunction(props.sweeper.function, { retryAttempts: 0, maxEventAge: Duration.minutes(1) }),
      ],
    });
  }
}

/** The dead-letter queue for ECS task events neither EventBridge nor Lambda could deliver. */
export function createTaskEventsDeadLetterQueue(scope: Construct, id: string): Queue {
  return new Queue(scope, id, {
    encryption: QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
  });
}
