/**
 * Restart safety: the server is SIGKILLed mid-job and started again on the same data folder. The
 * job must end in a terminal state with a reason, and its runner and kernel must not live on, nor
 * the killed server's warm runners and their kernels.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';
import { processesMentioning, TEST_PYTHON } from '../helpers/local-service.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'notebook-jobs-restart-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

async function startServer(port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bin/notebook-jobs.ts', 'serve', '--port', String(port), '--data', dataDir],
    {
      env: { ...process.env, NOTEBOOK_JOBS_PYTHON: TEST_PYTHON },
      stdio: 'ignore',
    },
  );
  children.push(child);
  for (let i = 0; i < 150; i++) {
    if (
      await fetch(`http://127.0.0.1:${port}/v1/health`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('server did not start');
}

async function getJob(port: number, id: string) {
  return (await fetch(`http://127.0.0.1:${port}/v1/jobs/${id}`)).json() as Promise<any>;
}

describe('server killed mid-job', () => {
  it('ends the job with a reason after restart and leaves no runner or kernel behind', async () => {
    const port = await freePort();
    const first = await startServer(port);
    const notebook = makeNotebook([
      codeCell('print("up", flush=True)'),
      codeCell('import time\ntime.sleep(300)'),
    ]);
    const created = await fetch(`http://127.0.0.1:${port}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ notebook: { content: notebook } }),
    });
    const { job_id: id } = (await created.json()) as { job_id: string };
    for (let i = 0; ; i++) {
      const job = await getJob(port, id);
      if (job.progress.current_cell?.index === 1) break;
      expect(i).toBeLessThan(300);
      await new Promise((r) => setTimeout(r, 100));
    }

    // The first server's warm pool (serve's default, one kernel) must not outlive it either.
    // Only this server's: other test files run warm pools of their own meanwhile.
    const ownWarm = () =>
      processesMentioning('--warm').filter((pid) => processesMentioning(dataDir).includes(pid));
    for (let i = 0; ownWarm().length === 0; i++) {
      expect(i, 'no warm runner started').toBeLessThan(300);
      await new Promise((r) => setTimeout(r, 100));
    }
    const warmPids = ownWarm();

    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    await startServer(port);

    let job = await getJob(port, id);
    for (let i = 0; !['completed', 'failed', 'cancelled'].includes(job.status); i++) {
      expect(i).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 100));
      job = await getJob(port, id);
    }
    expect(job.status).toBe('failed');
    expect(job.error.type).toBe('infrastructure');
    expect(job.error.message).toMatch(/server (restarted|stopped)/);
    for (let i = 0; processesMentioning(id).length > 0; i++) {
      expect(i, `left over: ${processesMentioning(id).join(', ')}`).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 100));
    }
    const leftWarm = () => ownWarm().filter((pid) => warmPids.includes(pid));
    for (let i = 0; leftWarm().length > 0; i++) {
      expect(i, `warm runners left over: ${leftWarm().join(', ')}`).toBeLessThan(100);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
});
