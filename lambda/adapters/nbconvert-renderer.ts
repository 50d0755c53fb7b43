/**
 * HTML rendering with nbconvert, run by the same Python that runs notebooks (local mode and the
 * container image have it; Debian: python3-nbconvert).
 */
import { spawn } from 'node:child_process';
import { InvalidRequestError } from '../core/errors.ts';
import type { NotebookRenderer } from '../core/ports.ts';

export class NbconvertRenderer implements NotebookRenderer {
  constructor(
    private readonly python: string,
    private readonly timeoutMs = 120_000,
  ) {}

  html(notebook: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        this.python,
        ['-m', 'nbconvert', '--to', 'html', '--stdin', '--stdout', '--log-level', 'ERROR'],
        {
          stdio: ['pipe', 'pipe', 'pipe'],
          timeout: this.timeoutMs,
        },
      );
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
      child.on('error', reject);
      child.on('close', (code) => {
        if (code === 0) return resolve(Buffer.concat(out));
        const detail = Buffer.concat(err).toString('utf8').trim().split('\n').slice(-3).join(' ');
        if (/No module named nbconvert/.test(detail)) {
          return reject(
            new InvalidRequestError(
              'format=html is not available here: nbconvert is not installed; use format=ipynb',
            ),
          );
        }
        reject(new Error(`nbconvert exited with code ${code}: ${detail}`));
      });
      child.stdin.end(notebook);
    });
  }
}
