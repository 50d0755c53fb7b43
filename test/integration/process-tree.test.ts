/**
 * Stopping a job stops every process it started (DESIGN 10): a cell that starts a process in a new
 * session, and one that double-forks into a daemon, leave nothing behind once the job is cancelled,
 * times out, or even completes. Real service, real kernel; processes are found by a unique marker
 * in their command line.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import {
  isEnded,
  processesMentioning,
  startTestService,
  type TestService,
} from '../helpers/local-service.ts';

/** The service's stop grace: SIGTERM to the runner, SIGKILL to its process group after this. */
const STOP_GRACE_MS = 5000;
let svc: TestService;

beforeAll(async () => {
  svc = await startTestService({ stopGraceMs: STOP_GRACE_MS });
});
afterAll(async () => {
  await svc?.close();
});

/** Live (non-zombie) processes whose command line contains `marker`. */
function processesWith(marker: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const state = /State:\s+(\w)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      if (state !== 'Z' && cmdline.includes(marker)) found.push(`${pid}: ${cmdline.replaceAll('\0', ' ')}`);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/**
 * Two escapees tagged with `marker` in their argv: one started in a new session (out of the
 * kernel's process group and session), and a daemon: double-forked by a shell (so orphaned and
 * reparented away from the kernel), in a session of its own, stdio closed.
 */
function escapingNotebook(marker: string, thenSleep: boolean) {
  return makeNotebook([
    codeCell(
      [
        'import subprocess, sys',
        `marker = ${JSON.stringify(marker)}`,
        "sleeper = [sys.executable, '-c', 'import time; time.sleep(600)']",
        "subprocess.Popen(sleeper + [marker + '-session'], start_new_session=True)",
        "daemonize = repr('import os, time; os.setsid(); time.sleep(600)')",
        "daemon = f'{sys.executable} -c {daemonize} {marker}-daemon </dev/null >/dev/null 2>&1 &'",
        "subprocess.run(['sh', '-c', f'({daemon})'], check=True)",
      ].join('\n'),
    ),
    codeCell(thenSleep ? 'import time\ntime.sleep(120)' : 'print("done")'),
  ]);
}

async function waitForEscapees(marker: string): Promise<void> {
  for (let i = 0; processesWith(marker).length < 2; i++) {
    expect(i, 'the notebook never started both processes').toBeLessThan(300);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Within the grace period no process carrying the marker may remain, nor any other process of the
 * job (the kernel, anything working in the job's folder).
 */
async function expectNoneLeftWithinGrace(marker: string, jobId: string, since: number): Promise<void> {
  const left = () => [...processesWith(marker), ...processesMentioning(jobId).map(String)];
  while (left().length > 0) {
    expect(Date.now() - since, `left running: ${left().join('; ')}`).toBeLessThan(STOP_GRACE_MS);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('processes a notebook starts', () => {
  it.each([
    {
      ending: 'cancel',
      timeout: 3600,
      stop: async (jobId: string) => {
        const response = await svc.request('POST', `/v1/jobs/${jobId}/cancel`);
        expect(response.body.status).toBe('cancelled');
      },
      status: 'cancelled',
      error: undefined,
    },
    {
      ending: 'timeout_seconds',
      timeout: 20,
      stop: async () => undefined,
      status: 'failed',
      error: 'timeout',
    },
    {
      // What the launcher does after its grace period; the sandbox hears of it (parent-death signal).
      ending: 'a SIGKILL of the runner',
      timeout: 3600,
      stop: async (jobId: string) => {
        const ref = (await svc.server.store.get(jobId))?.runner_ref ?? '';
        process.kill(Number(/^local:(\d+):/.exec(ref)?.[1]), 'SIGKILL');
      },
      status: 'failed',
      error: 'infrastructure',
    },
  ])(
    'are all stopped on $ending, in a new session or double-forked',
    async ({ timeout, stop, status, error }) => {
      const marker = `nbj-tree-${randomUUID()}`;
      const created = await svc.request('POST', '/v1/jobs', {
        notebook: { content: escapingNotebook(marker, true) },
        timeout_seconds: timeout,
      });
      expect(created.status).toBe(201);
      const jobId = created.body.job_id as string;
      await waitForEscapees(marker);
      await svc.waitFor(jobId, (job) => job.progress.current_cell?.index === 1, 30_000);

      await stop(jobId);
      const job = await svc.waitFor(jobId, isEnded, 30_000);
      expect(job.status).toBe(status);
      expect(job.error?.type).toBe(error);
      await expectNoneLeftWithinGrace(marker, jobId, Date.now());
    },
  );

  it('are stopped when the notebook completes and leaves them running', async () => {
    const marker = `nbj-tree-${randomUUID()}`;
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { content: escapingNotebook(marker, false) },
    });
    const job = await svc.waitFor(created.body.job_id, isEnded, 30_000);
    expect(job.status).toBe('completed');
    await expectNoneLeftWithinGrace(marker, job.job_id, Date.now());
  });
});
