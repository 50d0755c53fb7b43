/**
 * The runner's side of the engine sandbox: its command line, and reading back the executed notebook
 * from a folder the kernel owns, where the kernel may have put a trap in its place.
 */
import { execFileSync } from 'node:child_process';
import { linkSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readKernelFile, sandboxCommand, sandboxInput } from '../../lambda/kernels/engine-sandbox.ts';

const dir = mkdtempSync(join(tmpdir(), 'notebook-jobs-sandbox-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sandboxCommand', () => {
  it('runs sandbox.py isolated from PYTHON* variables, with the program after --', () => {
    expect(
      sandboxCommand(
        {
          python: '/usr/bin/python3',
          enginesDir: '/app/engines',
          workDir: '/w/job_1',
          kernelUser: 'kernel',
          graceMs: 20_000,
        },
        ['/usr/bin/python3', '/app/engines/nbclient_driver.py', '--input', 'in.ipynb'],
      ),
    ).toEqual([
      '/usr/bin/python3',
      '-I',
      '/app/engines/sandbox.py',
      '--grace',
      '20',
      '--workdir',
      '/w/job_1',
      '--user',
      'kernel',
      '--',
      '/usr/bin/python3',
      '/app/engines/nbclient_driver.py',
      '--input',
      'in.ipynb',
    ]);
  });

  it('sends the environment as JSON on stdin', () => {
    expect(JSON.parse(sandboxInput({ PATH: '/usr/bin', HOME: '/w' }))).toEqual({
      env: { PATH: '/usr/bin', HOME: '/w' },
    });
  });
});

describe('readKernelFile', () => {
  const secret = join(dir, 'secret');
  writeFileSync(secret, 'only the runner may read this');

  it('reads a regular file', async () => {
    writeFileSync(join(dir, 'output.ipynb'), '{"cells": []}');
    expect((await readKernelFile(join(dir, 'output.ipynb')))?.toString()).toBe('{"cells": []}');
  });

  it.each([
    ['missing', () => undefined],
    ['a symbolic link to another file', (path: string) => symlinkSync(secret, path)],
    ['a second hard link to another file', (path: string) => linkSync(secret, path)],
    ['a FIFO (reading would block)', (path: string) => execFileSync('mkfifo', [path])],
    ['a folder', (path: string) => execFileSync('mkdir', [path])],
  ])('gives null when the file is %s', async (_what, plant) => {
    const path = join(dir, `output-${Math.random().toString(36).slice(2)}.ipynb`);
    plant(path);
    expect(await readKernelFile(path)).toBeNull();
  });
});
