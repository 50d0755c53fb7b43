/**
 * Publishes job state changes to EventBridge as "Notebook Job State Change" events, so users can
 * route completions to SNS, Slack, Step Functions. Best effort: the change is already stored, so a
 * failed publish is logged with the job id and never thrown.
 */
import { PutEventsCommand, type EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { errorMessage } from '../../core/errors.ts';
import type { JobStateChange } from '../../core/job.ts';
import type { JobEventPublisher } from '../../core/ports.ts';
import { jobFields, textLog, type LogFn } from '../../core/logging.ts';

export const DETAIL_TYPE = 'Notebook Job State Change';
export const EVENT_SOURCE = 'notebook-jobs';

/** PutEvents takes at most 256 KB per entry; a long traceback is what could exceed it. */
const MAX_DETAIL_BYTES = 200 * 1024;

function detailOf(change: JobStateChange): string {
  const detail = JSON.stringify(change);
  if (Buffer.byteLength(detail) <= MAX_DETAIL_BYTES || !change.error?.traceback) return detail;
  return JSON.stringify({ ...change, error: { ...change.error, traceback: [] } });
}

export class EventBridgePublisher implements JobEventPublisher {
  private readonly log: LogFn;

  constructor(
    private readonly events: EventBridgeClient,
    private readonly config: { eventBus: string; log?: LogFn },
  ) {
    this.log = config.log ?? textLog();
  }

  async publish(change: JobStateChange): Promise<void> {
    try {
      const out = await this.events.send(
        new PutEventsCommand({
          Entries: [
            {
              Source: EVENT_SOURCE,
              DetailType: DETAIL_TYPE,
              EventBusName: this.config.eventBus,
              Detail: detailOf(change),
              Resources: [],
            },
          ],
        }),
      );
      if ((out.FailedEntryCount ?? 0) > 0) {
        const entry = out.Entries?.find((e) => e.ErrorCode) ?? out.Entries?.[0];
        this.log(
          `event for job ${change.job_id} (${change.status}) was not published to ${this.config.eventBus}: ${entry?.ErrorCode ?? 'unknown error'} ${entry?.ErrorMessage ?? ''}`.trim(),
          jobFields(change),
        );
      }
    } catch (error) {
      this.log(
        `event for job ${change.job_id} (${change.status}) was not published to ${this.config.eventBus}: ${errorMessage(error)}`,
        { ...jobFields(change), error },
      );
    }
  }
}
