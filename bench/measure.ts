/**
 * What every bench row uses (split from run.ts): quantiles, timing and the millisecond format.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export const run = promisify(execFile);
/** Rounds of each timed row (BENCH_RUNS). */
export const RUNS = Number(process.env.BENCH_RUNS ?? 10);

export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

export const median = (values: number[]) => quantile(values, 0.5);

export const ms = (n: number) => `${n.toFixed(n < 10 ? 2 : 0)} ms`;

export async function time<T>(fn: () => Promise<T>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}
