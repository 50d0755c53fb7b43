/**
 * Loaded into the local server by the soak bench only (`node --expose-gc --import tsx --import
 * ./bench/memory-probe.ts bin/notebook-jobs.ts serve ...`); never part of the product. On SIGUSR2
 * it runs a full garbage collection and prints one line, `MEMORY_PROBE {json}`, to stdout: the
 * process's memory right after the collection (so heap growth is live objects, not garbage), its
 * RSS just before it (what a user watching the process sees), and what LevelDB itself reports for
 * the embedded store (memtables plus block cache: bounded by its write buffer and cache sizes).
 */
import { getHeapStatistics } from 'node:v8';

export const PROBE_PREFIX = 'MEMORY_PROBE ';

const gc = (globalThis as { gc?: () => void }).gc;

/** Every LevelDB database this process opens (dynalite opens one), to ask for its memory. */
const levels = new Set<{ getProperty(property: string): string }>();
try {
  const { ClassicLevel } = await import('classic-level');
  const prototype = ClassicLevel.prototype as unknown as { _open: (...args: unknown[]) => Promise<void> };
  const open = prototype._open;
  prototype._open = function (this: { getProperty(property: string): string }, ...args: unknown[]) {
    levels.add(this);
    return open.apply(this, args);
  };
} catch {
  // No classic-level here: the samples simply carry no LevelDB figure.
}

function levelDbBytes(): number | null {
  let total: number | null = null;
  for (const level of levels) {
    try {
      total = (total ?? 0) + Number(level.getProperty('leveldb.approximate-memory-usage'));
    } catch {
      // closed
    }
  }
  return total;
}

process.on('SIGUSR2', () => {
  const rssBeforeGc = process.memoryUsage.rss();
  // Twice: the first collection can leave objects that only weak callbacks or finalizers free.
  gc?.();
  gc?.();
  const usage = process.memoryUsage();
  const heap = getHeapStatistics();
  const sample = {
    ...usage,
    rssBeforeGc,
    malloced: heap.malloced_memory,
    levelDb: levelDbBytes(),
    gc: Boolean(gc),
  };
  process.stdout.write(`${PROBE_PREFIX}${JSON.stringify(sample)}\n`);
});
