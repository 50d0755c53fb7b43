/**
 * What an operator looks at: one CloudWatch dashboard (submitted, queued, running, completed,
 * failed, run time p50/p95, queue wait, handler errors, API traffic) and the alarms worth waking
 * someone for, optionally mailed through SNS (context alarmEmail).
 *
 * Alarms, and why each is shaped the way it is:
 * - FailureRate: failed / (completed + failed) above 20% over 15 minutes, only once at least
 *   FAILURE_RATE_MIN_JOBS jobs ended (two failures out of three is noise, not an outage).
 * - StuckQueue: for 15 minutes jobs were waiting, a slot was free the whole time (running below
 *   maxConcurrentJobs) and nothing started. A full deployment with a queue is normal; a queue that
 *   does not drain while capacity is idle means launches are failing (capacity, image pull, IAM).
 * - HandlerErrors: any error of the five Lambda functions in 5 minutes, except the authorizer's
 *   refusals: API Gateway only answers 401 when the authorizer fails with `Unauthorized`, so every
 *   expired or unknown token is a Lambda error. The authorizer logs each refusal ("denied: ...");
 *   a metric filter counts those lines and the alarm subtracts them.
 * - TaskEventsDeadLetters: an ECS task event could not be delivered (the sweeper still repairs it).
 * - Api5xxRate: more than API_5XX_RATE_PERCENT of requests answered 5XX in two of three 5-minute
 *   periods, once there were API_MIN_REQUESTS requests (the gateway's own 5XX included: an
 *   authorizer that cannot reach the table, integration timeouts).
 * - ApiLatency: p99 latency at or above API_LATENCY_THRESHOLD_MS in two of three 5-minute periods.
 *   The longest legitimate request waits 25 s for its job (wait_seconds, MCP sync_timeout_seconds),
 *   so only requests running into API Gateway's 29 s integration limit reach it.
 * - LaunchFailures: a job failed with error.type infrastructure: it could not be started (RunTask
 *   refused, the image could not be pulled, capacity stayed short) or its task was lost.
 * - SweeperHeartbeat: no sweep finished for 10 minutes (the sweeper publishes the queued/running
 *   gauges at the end of every sweep). Without sweeps, deadlines, slot leaks, queued retries and
 *   vanished tasks go unrepaired.
 */
import { Duration, Stack } from 'aws-cdk-lib';
import { FilterPattern, MetricFilter } from 'aws-cdk-lib/aws-logs';
import {
  Alarm,
  AlarmStatusWidget,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  MathExpression,
  TextWidget,
  TreatMissingData,
  type IMetric,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import type { RestApi } from 'aws-cdk-lib/aws-apigateway';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { HouseFunction } from './house-function.ts';
import { jobMetric, METRIC_NAMESPACE } from './job-metrics.ts';

/** Percentage of ended jobs that failed above which FailureRate alarms. */
export const FAILURE_RATE_THRESHOLD = 20;
/** Ended jobs (completed + failed) in the window before a failure rate means anything. */
export const FAILURE_RATE_MIN_JOBS = 5;
/** Percentage of API requests answered 5XX above which Api5xxRate alarms. */
export const API_5XX_RATE_PERCENT = 5;
/** Requests in 5 minutes before a 5XX rate means anything. */
export const API_MIN_REQUESTS = 20;
/** p99 API latency that alarms: close to API Gateway's 29 s integration limit. */
export const API_LATENCY_THRESHOLD_MS = 28_000;
/** The authorizer's log line for a refused token (lambda/handlers/authorizer.ts). */
export const AUTHORIZER_DENIAL_PATTERN = '{ $.message = "denied:*" }';

export interface ObservabilityProps {
  readonly functions: readonly HouseFunction[];
  /** One of `functions`: its refusals (401s) are not counted as errors. */
  readonly authorizer: HouseFunction;
  /** One of `functions`: its gauges are the sweep heartbeat. */
  readonly sweeper: HouseFunction;
  readonly restApi: RestApi;
  readonly deadLetterQueue: IQueue;
  readonly maxConcurrentJobs: number;
  readonly alarmEmail: string | undefined;
  /** Warm runner tasks (stack setting warmRunners): with any, the idle-runner gauge is plotted. */
  readonly warmRunners?: number;
}

/** The dashboard, the alarms and (with an alarm email) their SNS topic. */
export class Observability extends Construct {
  readonly dashboard: Dashboard;
  readonly alarms: Alarm[] = [];
  readonly alarmTopic: Topic | undefined;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const minutes = (n: number) => Duration.minutes(n);
    const fifteen = minutes(15);

    const failureRate = new MathExpression({
      label: 'Failed jobs, % of ended',
      period: fifteen,
      expression:
        `IF((FILL(completed, 0) + FILL(failed, 0)) >= ${FAILURE_RATE_MIN_JOBS}, ` +
        `100 * FILL(failed, 0) / (FILL(completed, 0) + FILL(failed, 0)), 0)`,
      usingMetrics: {
        completed: jobMetric('JobsCompleted', 'Sum', fifteen),
        failed: jobMetric('JobsFailed', 'Sum', fifteen),
      },
    });
    this.alarms.push(
      new Alarm(this, 'FailureRate', {
        alarmDescription: `More than ${FAILURE_RATE_THRESHOLD}% of the jobs that ended in 15 minutes failed (at least ${FAILURE_RATE_MIN_JOBS} ended). Look at the failed jobs' error.type: infrastructure points at the platform, cell_error at the notebooks.`,
        metric: failureRate,
        threshold: FAILURE_RATE_THRESHOLD,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );

    const five = minutes(5);
    const stuck = new MathExpression({
      label: 'Queue waiting with a free slot and no start',
      period: five,
      expression: `IF(FILL(queued, 0) > 0 AND FILL(running, 0) < ${props.maxConcurrentJobs} AND FILL(started, 0) == 0, 1, 0)`,
      usingMetrics: {
        // Minimum: jobs waited through the whole 5 minutes, not just for a moment.
        queued: jobMetric('JobsQueued', 'Minimum', five),
        // Maximum: a slot stayed free through the whole 5 minutes.
        running: jobMetric('JobsRunning', 'Maximum', five),
        started: jobMetric('JobsStarted', 'Sum', five),
      },
    });
    this.alarms.push(
      new Alarm(this, 'StuckQueue', {
        alarmDescription: `For 15 minutes jobs waited queued while fewer than ${props.maxConcurrentJobs} ran and none started: launches are failing. Check the sweeper and api logs for RunTask errors and the ECS console for stopped tasks.`,
        metric: stuck,
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );

    const errorMetrics: Record<string, IMetric> = {};
    const terms: string[] = [];
    props.functions.forEach((fn, index) => {
      errorMetrics[`e${index}`] = fn.function.metricErrors({ period: five, label: fn.handlerName });
      terms.push(
        fn === props.authorizer
          ? `IF(FILL(e${index}, 0) - FILL(denied, 0) > 0, FILL(e${index}, 0) - FILL(denied, 0), 0)`
          : `FILL(e${index}, 0)`,
      );
    });
    const denials = new MetricFilter(this, 'AuthorizerDenials', {
      logGroup: props.authorizer.logGroup,
      filterPattern: FilterPattern.literal(AUTHORIZER_DENIAL_PATTERN),
      metricNamespace: METRIC_NAMESPACE,
      metricName: 'AuthorizerDenials',
      metricValue: '1',
    });
    errorMetrics.denied = denials.metric({ period: five, statistic: 'Sum' });
    const handlerErrors = new MathExpression({
      label: 'Lambda errors, all handlers (authorizer refusals left out)',
      period: five,
      expression: terms.join(' + '),
      usingMetrics: errorMetrics,
    });
    this.alarms.push(
      new Alarm(this, 'HandlerErrors', {
        alarmDescription:
          'A Lambda handler (api, mcp, task-events, sweeper, authorizer) failed in the last 5 minutes. Its log group has the stack trace.',
        metric: handlerErrors,
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
    this.alarms.push(
      new Alarm(this, 'TaskEventsDeadLetters', {
        alarmDescription:
          'ECS task events could not be delivered to task-events; the sweeper reconciles those jobs, but the cause (permissions, a failing handler) needs a look.',
        metric: props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({
          period: five,
          statistic: 'Maximum',
        }),
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );

    const api = props.restApi;
    const apiServerErrors = new MathExpression({
      label: 'API 5XX, % of requests',
      period: five,
      expression: `IF(FILL(requests, 0) >= ${API_MIN_REQUESTS}, 100 * FILL(errors, 0) / requests, 0)`,
      usingMetrics: {
        requests: api.metricCount({ period: five, statistic: 'Sum' }),
        errors: api.metricServerError({ period: five, statistic: 'Sum' }),
      },
    });
    this.alarms.push(
      new Alarm(this, 'Api5xxRate', {
        alarmDescription: `More than ${API_5XX_RATE_PERCENT}% of API requests answered 5XX in two of the last three 5-minute periods (at least ${API_MIN_REQUESTS} requests each). The API access log has the status, path and integration error of each request; the api and mcp log groups the stack traces.`,
        metric: apiServerErrors,
        threshold: API_5XX_RATE_PERCENT,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
    this.alarms.push(
      new Alarm(this, 'ApiLatency', {
        alarmDescription: `API p99 latency reached ${API_LATENCY_THRESHOLD_MS / 1000} s in two of the last three 5-minute periods: requests are running into API Gateway's 29 s limit (the longest legitimate wait is 25 s). Look for slow DynamoDB or S3 calls and cold starts in the api and mcp logs.`,
        metric: api.metricLatency({ period: five, statistic: 'p99' }),
        threshold: API_LATENCY_THRESHOLD_MS,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
    this.alarms.push(
      new Alarm(this, 'LaunchFailures', {
        alarmDescription:
          'A job failed because of the platform (error.type infrastructure): it could not be launched (RunTask refused, vCPU quota, image pull, capacity past the launch deadline) or its task was lost. The job error says which; docs/deploy.md lists the usual causes.',
        metric: jobMetric('JobsFailedInfrastructure', 'Sum', five),
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    );
    this.alarms.push(
      new Alarm(this, 'SweeperHeartbeat', {
        alarmDescription: `No sweep finished in 10 minutes (the sweeper, ${props.sweeper.handlerName}, runs every minute and publishes the JobsQueued gauge at the end of each sweep). Deadlines, leaked slots, queued launches and vanished tasks are not being repaired: check the sweeper's log group and its schedule rule.`,
        metric: jobMetric('JobsQueued', 'SampleCount', five),
        threshold: 1,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 2,
        // No data is exactly what a stopped sweeper looks like.
        treatMissingData: TreatMissingData.BREACHING,
      }),
    );

    if (props.alarmEmail) {
      this.alarmTopic = new Topic(this, 'AlarmTopic', {
        displayName: 'notebook-jobs alarms',
        enforceSSL: true,
      });
      this.alarmTopic.addSubscription(new EmailSubscription(props.alarmEmail));
      const action = new SnsAction(this.alarmTopic);
      for (const alarm of this.alarms) {
        alarm.addAlarmAction(action);
        alarm.addOkAction(action);
      }
    }

    this.dashboard = this.buildDashboard(props, handlerErrors, failureRate);
  }

  private buildDashboard(props: ObservabilityProps, handlerErrors: IMetric, failureRate: IMetric): Dashboard {
    const five = Duration.minutes(5);
    const one = Duration.minutes(1);
    const dashboard = new Dashboard(this, 'Dashboard', { defaultInterval: Duration.hours(24) });
    const api = props.restApi;
    dashboard.addWidgets(
      new TextWidget({
        markdown: `# notebook-jobs (${Stack.of(this).stackName})\nJob counts come from the job state-change events; queued and running from the sweeper, every minute.`,
        width: 24,
        height: 2,
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Jobs per 5 minutes',
        width: 12,
        left: [
          jobMetric('JobsSubmitted', 'Sum', five, 'submitted'),
          jobMetric('JobsStarted', 'Sum', five, 'started'),
          jobMetric('JobsCompleted', 'Sum', five, 'completed'),
          jobMetric('JobsFailed', 'Sum', five, 'failed'),
          jobMetric('JobsCancelled', 'Sum', five, 'cancelled'),
          jobMetric('JobsFailedInfrastructure', 'Sum', five, 'failed by the platform'),
        ],
      }),
      new GraphWidget({
        title: 'Queued and running',
        width: 12,
        left: [
          jobMetric('JobsQueued', 'Maximum', one, 'queued'),
          jobMetric('JobsRunning', 'Maximum', one, 'running'),
          // Minimum: the pool ran dry at some point of the minute (jobs then start cold).
          ...(props.warmRunners ? [jobMetric('WarmRunnersIdle', 'Minimum', one, 'idle warm runners')] : []),
        ],
        leftAnnotations: [
          { value: props.maxConcurrentJobs, label: 'max concurrent jobs' },
          ...(props.warmRunners ? [{ value: props.warmRunners, label: 'warm runners' }] : []),
        ],
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Run time (seconds)',
        width: 8,
        left: [jobMetric('JobDuration', 'p50', five, 'p50'), jobMetric('JobDuration', 'p95', five, 'p95')],
      }),
      new GraphWidget({
        title: 'Queue wait (seconds)',
        width: 8,
        left: [jobMetric('QueueWait', 'p50', five, 'p50'), jobMetric('QueueWait', 'p95', five, 'p95')],
      }),
      new GraphWidget({
        title: 'Failed, % of ended jobs (15 min)',
        width: 8,
        left: [failureRate],
        leftAnnotations: [{ value: FAILURE_RATE_THRESHOLD, label: 'alarm' }],
      }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Lambda errors',
        width: 12,
        left: props.functions.map((fn) => fn.function.metricErrors({ period: five, label: fn.handlerName })),
        right: [handlerErrors],
      }),
      new GraphWidget({
        title: 'API requests and errors',
        width: 12,
        left: [
          api.metricCount({ period: five, label: 'requests' }),
          api.metricClientError({ period: five, label: '4XX' }),
          api.metricServerError({ period: five, label: '5XX' }),
        ],
        right: [api.metricLatency({ period: five, statistic: 'p95', label: 'latency p95 (ms)' })],
      }),
    );
    dashboard.addWidgets(new AlarmStatusWidget({ title: 'Alarms', width: 24, alarms: this.alarms }));
    return dashboard;
  }
}
