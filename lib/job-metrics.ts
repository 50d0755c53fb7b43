/**
 * Job metrics derived from the service's own events. Every job state change is published to
 * EventBridge (source `notebook-jobs`, detail-type `Notebook Job State Change`, detail =
 * JobStateChange in lambda/core/job.ts); a rule copies them into a log group, and metric filters
 * turn them into counts and durations in the `NotebookJobs` namespace. The queued/running gauges
 * (`JobsQueued`, `JobsRunning`) come from the sweeper's EMF output in the same namespace.
 *
 * Doing this in CloudWatch rather than in code keeps the handlers free of metric calls per state
 * change, and the events log doubles as an audit trail of every job's life.
 */
import { Duration, RemovalPolicy, Stack, ArnFormat } from 'aws-cdk-lib';
import { Metric, Unit } from 'aws-cdk-lib/aws-cloudwatch';
import { Rule, type IRuleTarget } from 'aws-cdk-lib/aws-events';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { FilterPattern, LogGroup, MetricFilter, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { EVENT_SOURCE, STATE_CHANGE_DETAIL_TYPE } from './job-events.ts';

/** CloudWatch namespace of every service metric. */
export const METRIC_NAMESPACE = 'NotebookJobs';

const TERMINAL =
  '($.detail.status = "completed" || $.detail.status = "failed" || $.detail.status = "cancelled")';

/** Metric filter definitions: name, JSON filter pattern, value (1 = count the event), unit. */
export const JOB_METRIC_FILTERS = {
  JobsSubmitted: {
    pattern: '{ ($.detail.status = "queued") && ($.detail.previous_status IS NULL) }',
    value: '1',
    unit: Unit.COUNT,
  },
  JobsStarted: { pattern: '{ $.detail.status = "running" }', value: '1', unit: Unit.COUNT },
  JobsCompleted: { pattern: '{ $.detail.status = "completed" }', value: '1', unit: Unit.COUNT },
  JobsFailed: { pattern: '{ $.detail.status = "failed" }', value: '1', unit: Unit.COUNT },
  JobsCancelled: { pattern: '{ $.detail.status = "cancelled" }', value: '1', unit: Unit.COUNT },
  // Jobs the platform failed: not started (RunTask refused, image pull, capacity past the launch
  // deadline) or their task lost; never a notebook's own error.
  JobsFailedInfrastructure: {
    pattern: '{ ($.detail.status = "failed") && ($.detail.error.type = "infrastructure") }',
    value: '1',
    unit: Unit.COUNT,
  },
  // Only jobs that ran: a job cancelled while queued has no duration (null fails the comparison).
  JobDuration: {
    pattern: `{ ${TERMINAL} && ($.detail.duration_seconds >= 0) }`,
    value: '$.detail.duration_seconds',
    unit: Unit.SECONDS,
  },
  QueueWait: {
    pattern: '{ ($.detail.status = "running") && ($.detail.queue_wait_seconds >= 0) }',
    value: '$.detail.queue_wait_seconds',
    unit: Unit.SECONDS,
  },
} as const;

export type JobMetricName =
  | keyof typeof JOB_METRIC_FILTERS
  | 'JobsQueued'
  | 'JobsRunning'
  /** Idle warm runners (the sweeper's gauge, only with `warmRunners` > 0). */
  | 'WarmRunnersIdle';

export interface JobMetricsProps {
  readonly logRetention: RetentionDays;
  readonly logRemovalPolicy: RemovalPolicy;
}

/** The events log group, the rule feeding it and the metric filters on it. */
export class JobMetrics extends Construct {
  readonly eventsLogGroup: LogGroup;
  readonly rule: Rule;

  constructor(scope: Construct, id: string, props: JobMetricsProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.eventsLogGroup = new LogGroup(this, 'EventsLog', {
      // EventBridge only delivers to log groups named /aws/events/...
      logGroupName: `/aws/events/${stack.stackName}/job-state-changes`,
      retention: props.logRetention,
      removalPolicy: props.logRemovalPolicy,
    });
    // A native resource policy instead of the CDK log-group target, which installs a custom
    // resource Lambda to write the same policy.
    this.eventsLogGroup.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal('events.amazonaws.com')],
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.eventsLogGroup.logGroupArn],
      }),
    );
    const logGroupTarget: IRuleTarget = {
      bind: () => ({
        arn: stack.formatArn({
          service: 'logs',
          resource: 'log-group',
          resourceName: this.eventsLogGroup.logGroupName,
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        }),
      }),
    };
    this.rule = new Rule(this, 'StateChanges', {
      description: 'notebook-jobs: job state changes -> events log (dashboard metrics)',
      eventPattern: { source: [EVENT_SOURCE], detailType: [STATE_CHANGE_DETAIL_TYPE] },
      targets: [logGroupTarget],
    });
    for (const [name, filter] of Object.entries(JOB_METRIC_FILTERS)) {
      new MetricFilter(this, name, {
        logGroup: this.eventsLogGroup,
        filterPattern: FilterPattern.literal(filter.pattern),
        metricNamespace: METRIC_NAMESPACE,
        metricName: name,
        metricValue: filter.value,
        unit: filter.unit,
      });
    }
  }
}

/** A service metric (dimension-less, namespace NotebookJobs). */
export function jobMetric(name: JobMetricName, statistic: string, period: Duration, label?: string): Metric {
  return new Metric({ namespace: METRIC_NAMESPACE, metricName: name, statistic, period, label });
}
