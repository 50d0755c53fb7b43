/**
 * Makes dynalite close the LevelDB iterator behind every Query and Scan.
 *
 * dynalite 4.0.0 reads LevelDB through streams whose destroy() closes the iterator only
 * `if (iterator.return)`, but abstract-level 3 iterators (what `level` 10 hands out) have `close()`
 * and no `return()`. So no iterator was ever closed: abstract-level keeps every open iterator in its
 * database's resource set (in the JS heap: the iterator and the items it had prefetched) and each
 * native LevelDB iterator keeps what it points at (memtables, table blocks) out of reach of
 * LevelDB's own freeing. The local server grew by about 50 iterators, ~1 MB, per job, for good.
 *
 * Giving the iterators the `return()` dynalite looks for lets each stream close its iterator when
 * it ends or is abandoned. Idempotent, and inert once dynalite or abstract-level provide it.
 */
import { AbstractIterator, AbstractKeyIterator, AbstractValueIterator } from 'abstract-level';

interface Closable {
  return?: () => Promise<IteratorReturnResult<undefined>>;
  close(): Promise<void>;
}

/** Call once before starting dynalite on a `path` (LevelDB) store. */
export function closeLevelIteratorsWithTheirStreams(): void {
  for (const Iterator of [AbstractIterator, AbstractKeyIterator, AbstractValueIterator]) {
    const prototype = Iterator.prototype as unknown as Closable;
    if (typeof prototype.return === 'function') continue;
    Object.defineProperty(prototype, 'return', {
      configurable: true,
      writable: true,
      // The async-iterator protocol's return(): stop and free, then report done.
      value: async function (this: Closable): Promise<IteratorReturnResult<undefined>> {
        await this.close();
        return { done: true, value: undefined };
      },
    });
  }
}
