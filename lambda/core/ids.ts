/**
 * Job ids: `job_` + 10 Crockford base32 chars of milliseconds + 20 chars (100 bits) of crypto
 * randomness. Sorting ids sorts by creation time; within one millisecond the random part is
 * incremented (as ULID's monotonic mode does) so one process's ids stay strictly increasing, which
 * keeps the queue FIFO.
 */
import { randomBytes } from 'node:crypto';
import type { IdGenerator } from './ports.ts';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const RANDOM_CHARS = 20;
const RANDOM_LIMIT = 1n << BigInt(RANDOM_CHARS * 5);

export const JOB_ID_PATTERN = /^job_[0-9A-HJKMNP-TV-Z]{30}$/;

function encode(value: bigint, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    out = ALPHABET[Number(value & 31n)] + out;
    value >>= 5n;
  }
  return out;
}

export class MonotonicJobIds implements IdGenerator {
  private lastTime = -1;
  private lastRandom = 0n;

  constructor(private readonly now: () => number = Date.now) {}

  jobId(): string {
    let time = this.now();
    if (time <= this.lastTime) {
      time = this.lastTime;
      this.lastRandom += 1n;
      if (this.lastRandom >= RANDOM_LIMIT) {
        time += 1;
        this.lastRandom = this.freshRandom();
      }
    } else {
      this.lastRandom = this.freshRandom();
    }
    this.lastTime = time;
    return `job_${encode(BigInt(time), 10)}${encode(this.lastRandom, RANDOM_CHARS)}`;
  }

  private freshRandom(): bigint {
    // 13 bytes = 104 bits, reduced to all 100 (2^104 is a multiple of 2^100, so still uniform). An
    // increment within one millisecond that would overflow moves to the next millisecond instead.
    return BigInt(`0x${randomBytes(13).toString('hex')}`) % RANDOM_LIMIT;
  }
}

/**
 * The smallest id string at or after which every id minted at `time` or later sorts: a key bound for
 * "created before `time`" queries (an id's time part never exceeds its job's created_at).
 */
export function jobIdTimeBound(time: Date): string {
  return `job_${encode(BigInt(time.getTime()), 10)}`;
}
