/**
 * The EventBridge publisher against a mocked client (aws-sdk-client-mock): the exact PutEvents
 * entry, and failures (rejected entries, thrown errors) logged with the job id and tenant, never thrown.
 */
import {
  EventBridgeClient,
  EventBridgeServiceException,
  PutEventsCommand,
} from '@aws-sdk/client-eventbridge';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  DETAIL_TYPE,
  EVENT_SOURCE,
  EventBridgePublisher,
} from '../../lambda/adapters/aws/eventbridge-publisher.ts';
import { stateChange } from '../../lambda/core/job.ts';
import { jobRecord } from '../helpers/jobs.ts';
import type { LogFields } from '../../lambda/core/logging.ts';

const client = new EventBridgeClient({
  region: 'eu-west-1',
  credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
});
const eb = mockClient(client);
let logged: Array<[string, LogFields | undefined]>;
const publisher = () =>
  new EventBridgePublisher(client, {
    eventBus: 'default',
    log: (m, fields) => void logged.push([m, fields]),
  });

const change = stateChange(
  jobRecord('job_01JD0000000000000000000000', {
    status: 'failed',
    tenant: 'team-a',
    tags: { team: 'ml' },
    attempt: 1,
    created_at: '2026-05-01T10:00:00.000Z',
    started_at: '2026-05-01T10:00:05.000Z',
    ended_at: '2026-05-01T10:01:05.000Z',
    error: {
      type: 'cell_error',
      message: 'ZeroDivisionError',
      cell_index: 3,
      traceback: ['Traceback', 'x/0'],
    },
  }),
  'running',
);

beforeEach(() => {
  eb.reset();
  logged = [];
});

describe('EventBridgePublisher', () => {
  it('puts one "Notebook Job State Change" event with the change as detail', async () => {
    eb.on(PutEventsCommand).resolves({ FailedEntryCount: 0, Entries: [{ EventId: 'e-1' }] });

    await publisher().publish(change);

    expect(eb.commandCalls(PutEventsCommand)[0]!.args[0].input).toEqual({
      Entries: [
        {
          Source: 'notebook-jobs',
          DetailType: 'Notebook Job State Change',
          EventBusName: 'default',
          Detail: JSON.stringify(change),
          Resources: [],
        },
      ],
    });
    expect(
      JSON.parse(eb.commandCalls(PutEventsCommand)[0]!.args[0].input.Entries![0]!.Detail!),
    ).toMatchObject({
      job_id: 'job_01JD0000000000000000000000',
      status: 'failed',
      previous_status: 'running',
      duration_seconds: 60,
      queue_wait_seconds: 5,
    });
    expect([EVENT_SOURCE, DETAIL_TYPE]).toEqual(['notebook-jobs', 'Notebook Job State Change']);
    expect(logged).toEqual([]);
  });

  it('logs a rejected entry with the job id instead of throwing', async () => {
    eb.on(PutEventsCommand).resolves({
      FailedEntryCount: 1,
      Entries: [{ ErrorCode: 'InternalFailure', ErrorMessage: 'try again' }],
    });

    await expect(publisher().publish(change)).resolves.toBeUndefined();

    expect(logged).toEqual([
      [
        'event for job job_01JD0000000000000000000000 (failed) was not published to default: InternalFailure try again',
        { job_id: 'job_01JD0000000000000000000000', tenant: 'team-a' },
      ],
    ]);
  });

  it('logs a thrown error with the job id, its tenant and the error itself instead of throwing', async () => {
    const denied = new EventBridgeServiceException({
      name: 'AccessDeniedException',
      $fault: 'client',
      message: 'not allowed',
      $metadata: {},
    });
    eb.on(PutEventsCommand).rejects(denied);

    await expect(publisher().publish(change)).resolves.toBeUndefined();

    expect(logged).toEqual([
      [
        'event for job job_01JD0000000000000000000000 (failed) was not published to default: not allowed',
        { job_id: 'job_01JD0000000000000000000000', tenant: 'team-a', error: denied },
      ],
    ]);
  });

  it('drops a traceback that would make the entry too large, keeping the error itself', async () => {
    eb.on(PutEventsCommand).resolves({ FailedEntryCount: 0 });
    const huge = { ...change, error: { ...change.error!, traceback: ['x'.repeat(300 * 1024)] } };

    await publisher().publish(huge);

    const detail = JSON.parse(eb.commandCalls(PutEventsCommand)[0]!.args[0].input.Entries![0]!.Detail!);
    expect(detail.error).toEqual({
      type: 'cell_error',
      message: 'ZeroDivisionError',
      cell_index: 3,
      traceback: [],
    });
  });
});
