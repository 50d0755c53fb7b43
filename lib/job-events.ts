/**
 * The service's job state-change events on EventBridge, as the app publishes them (the detail is
 * JobStateChange in lambda/core/job.ts), and the one permission to publish them.
 */
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IEventBus } from 'aws-cdk-lib/aws-events';

/** `source` of every job event. */
export const EVENT_SOURCE = 'notebook-jobs';
/** `detail-type` of every job event. */
export const STATE_CHANGE_DETAIL_TYPE = 'Notebook Job State Change';

/**
 * events:PutEvents on one bus, for this service's state-change events only. EventBridge can condition
 * PutEvents on an entry's source and detail-type, not on its detail (so not on the job id inside).
 */
export function eventPublishStatement(bus: IEventBus): PolicyStatement {
  return new PolicyStatement({
    actions: ['events:PutEvents'],
    resources: [bus.eventBusArn],
    conditions: {
      StringEquals: { 'events:source': EVENT_SOURCE, 'events:detail-type': STATE_CHANGE_DETAIL_TYPE },
    },
  });
}
