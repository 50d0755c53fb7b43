/**
 * Small core pieces the rest relies on: job ids (ordering = creation order), signed cursors and
 * configuration. (Local artifacts: file-artifacts.test.ts.)
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, intEnv, oneOfEnv, requireEnv, withRenamed } from '../../lambda/core/config.ts';
import { CursorCodec } from '../../lambda/core/cursor.ts';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import { JOB_ID_PATTERN, MonotonicJobIds, jobIdTimeBound } from '../../lambda/core/ids.ts';

const T0 = Date.parse('2026-03-04T05:06:07.089Z');

/** A generator whose clock reads `clock.now`. */
function idsAt(clock: { now: number }) {
  return new MonotonicJobIds(() => clock.now);
}

function expectStrictlyIncreasing(ids: string[]) {
  for (let i = 1; i < ids.length; i++) {
    if (!((ids[i - 1] as string) < (ids[i] as string)))
      expect.fail(`id ${i} (${ids[i]}) does not sort after id ${i - 1} (${ids[i - 1]})`);
  }
}

describe('MonotonicJobIds', () => {
  it('draws all 100 random bits: the first random character of fresh ids takes all 32 values', () => {
    const firsts = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      // A new generator each time, at a new millisecond: every id has a fresh random part.
      firsts.add(new MonotonicJobIds(() => T0 + i).jobId().charAt(14));
    }
    // With 92 bits (the old bug) only 0-3 appeared; missing any of 32 in 2,000 draws has p < 1e-25.
    expect(firsts.size).toBe(32);
  });

  it('moves to the next millisecond when increments within one would overflow the random part', () => {
    const ids = new MonotonicJobIds(() => T0);
    const first = ids.jobId();
    (ids as unknown as { lastRandom: bigint }).lastRandom = (1n << 100n) - 1n;
    const next = ids.jobId();
    expect(next > first).toBe(true);
    expect(next.slice(4, 14)).not.toBe(first.slice(4, 14));
  });

  it('mints ids that match JOB_ID_PATTERN', () => {
    const ids = new MonotonicJobIds();
    for (let i = 0; i < 1000; i++) expect(ids.jobId()).toMatch(JOB_ID_PATTERN);
    expect(JOB_ID_PATTERN.test('job_0000000000AAAAAAAAAAAAAAAAAAAA')).toBe(true);
    expect(JOB_ID_PATTERN.test('job_0000000000AAAAAAAAAAAAAAAAAAAI')).toBe(false); // no I, L, O, U
    expect(JOB_ID_PATTERN.test('job_0000000000AAAAAAAAAAAAAAAAAAA')).toBe(false);
  });

  it('mints 10,000 strictly increasing, unique ids from a frozen clock', () => {
    const ids = idsAt({ now: T0 });
    const minted = Array.from({ length: 10_000 }, () => ids.jobId());
    expect(new Set(minted).size).toBe(10_000);
    expectStrictlyIncreasing(minted);
    for (const id of minted) expect(id).toMatch(JOB_ID_PATTERN);
    // All carry the same time part: the clock's millisecond.
    expect(new Set(minted.map((id) => id.slice(0, 14))).size).toBe(1);
    expect(minted[0]?.startsWith(jobIdTimeBound(new Date(T0)))).toBe(true);
  });

  it('sorts ids of a later millisecond after every id of an earlier one', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 44 }),
        fc.integer({ min: 1, max: 500 }),
        fc.integer({ min: 1, max: 100_000 }),
        (start, perMs, step) => {
          const clock = { now: start };
          const ids = idsAt(clock);
          const early = Array.from({ length: perMs }, () => ids.jobId());
          clock.now = start + step;
          const late = ids.jobId();
          expectStrictlyIncreasing([...early, late]);
          // A fresh generator (another process) at the later time sorts after them too.
          expect(idsAt(clock).jobId() > (early.at(-1) as string)).toBe(true);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('stays increasing when the clock steps back', () => {
    const clock = { now: T0 };
    const ids = idsAt(clock);
    const minted = [ids.jobId(), ids.jobId()];
    clock.now = T0 - 5000;
    minted.push(ids.jobId(), ids.jobId());
    clock.now = T0 + 1;
    minted.push(ids.jobId());
    expectStrictlyIncreasing(minted);
  });

  it('jobIdTimeBound(t) sorts above every id minted before t and below ids minted at or after t', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 44 }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 10_000_000 }),
        (t, perMs, earlier) => {
          const bound = jobIdTimeBound(new Date(t));
          const clock = { now: t - 1 };
          const ids = idsAt(clock);
          // The largest ids of t-1 ms (after many in-millisecond increments) stay below.
          const justBefore = Array.from({ length: perMs }, () => ids.jobId());
          for (const id of justBefore) expect(id < bound).toBe(true);
          expect(idsAt({ now: Math.max(0, t - earlier) }).jobId() < bound).toBe(true);
          // Ids minted at t, t + 1 ms and later sort above.
          expect(idsAt({ now: t }).jobId() > bound).toBe(true);
          clock.now = t + 1;
          expect(ids.jobId() > bound).toBe(true);
          expect(idsAt({ now: t + 1 }).jobId() > bound).toBe(true);
          expect(idsAt({ now: t + earlier }).jobId() > bound).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('CursorCodec', () => {
  const secret = 'a server secret of some length';
  const codec = new CursorCodec(secret);
  const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

  function expectInvalidCursor(decode: () => unknown) {
    let thrown: unknown;
    try {
      decode();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InvalidRequestError);
    expect((thrown as Error).message).toMatch(/cursor/);
  }

  /** `text` with the character at `at` replaced by another base64url character. */
  function replaced(text: string, at: number, pick: number): string {
    const others = BASE64URL.replace(text[at] as string, '');
    return `${text.slice(0, at)}${others[pick % others.length]}${text.slice(at + 1)}`;
  }

  it('refuses a MAC with anything added, inserted or changed, even where base64url decoding ignores it', () => {
    const codec = new CursorCodec('a-secret-of-enough-length');
    const cursor = codec.encode('scope', '12345');
    const [payload, mac] = cursor.split('.') as [string, string];
    const last = mac.at(-1) as string;
    const sibling = String.fromCharCode(last.charCodeAt(0) ^ 1);
    for (const altered of [
      `${cursor} `,
      `${cursor}=`,
      `${cursor}!`,
      `${payload}.${mac.slice(0, 5)}\n${mac.slice(5)}`,
      `${payload}.${mac.slice(0, -1)}${sibling}`,
    ]) {
      expect(() => codec.decode('scope', altered), JSON.stringify(altered)).toThrow(/cursor/);
    }
  });

  it('refuses a short secret', () => {
    expect(() => new CursorCodec('too short')).toThrow(/16/);
  });

  it('round-trips any value within its scope', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        fc.oneof(fc.string({ unit: 'grapheme', maxLength: 300 }), fc.nat().map(String)),
        (scope, value) => {
          const cursor = codec.encode(scope, value);
          expect(cursor).toMatch(/^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$/);
          expect(codec.decode(scope, cursor)).toBe(value);
          // Another codec with the same secret (the service after a restart) reads it too.
          expect(new CursorCodec(secret).decode(scope, cursor)).toBe(value);
        },
      ),
    );
  });

  it('rejects a cursor whose payload was changed', () => {
    const cursor = codec.encode('logs:job_A', JSON.stringify({ offset: 123456, shard: 'a' }));
    const [payload, mac] = cursor.split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ offset: 0, shard: 'a' })).toString('base64url');
    expectInvalidCursor(() => codec.decode('logs:job_A', `${forged}.${mac}`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}A.${mac}`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload.slice(1)}.${mac}`));
    fc.assert(
      fc.property(fc.nat({ max: payload.length - 1 }), fc.nat(), (at, pick) => {
        expectInvalidCursor(() => codec.decode('logs:job_A', `${replaced(payload, at, pick)}.${mac}`));
      }),
    );
  });

  it('rejects a cursor whose MAC was changed', () => {
    const cursor = codec.encode('logs:job_A', '4096');
    const [payload, mac] = cursor.split('.') as [string, string];
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.${mac.slice(0, -2)}`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.${mac}AAAA`));
    expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.${'A'.repeat(mac.length)}`));
    // Every character but the last carries 6 bits of the 128-bit MAC.
    fc.assert(
      fc.property(fc.nat({ max: mac.length - 2 }), fc.nat(), (at, pick) => {
        expectInvalidCursor(() => codec.decode('logs:job_A', `${payload}.${replaced(mac, at, pick)}`));
      }),
    );
  });

  it('rejects a cursor from another scope or signed with another secret', () => {
    const cursor = codec.encode('logs:job_A', '4096');
    expectInvalidCursor(() => codec.decode('logs:job_B', cursor));
    expectInvalidCursor(() => codec.decode('list:tenant=default', cursor));
    expectInvalidCursor(() => codec.decode('logs:job_A ', cursor));
    const other = new CursorCodec('another server secret!');
    expectInvalidCursor(() => other.decode('logs:job_A', cursor));
    expectInvalidCursor(() => codec.decode('logs:job_A', other.encode('logs:job_A', '4096')));
  });

  it.each(['', '.', 'abc', 'a.b.c', `${'x'.repeat(10)}.`, '.AAAAAAAAAAAAAAAAAAAAAA', '%%%.%%%'])(
    'rejects the malformed cursor %j',
    (cursor) => expectInvalidCursor(() => codec.decode('logs:job_A', cursor)),
  );
});

describe('configuration', () => {
  it('reads a renamed variable by its old name with a warning, and the new name wins', () => {
    const warnings: string[] = [];
    const warn = (message: string) => warnings.push(message);
    const NEW = 'NOTEBOOK_JOBS_MAX_CONCURRENT_JOBS';
    const OLD = 'NOTEBOOK_JOBS_MAX_CONCURRENT';
    expect(intEnv(withRenamed({ [OLD]: '3' }, NEW, OLD, warn), NEW, 5, 1)).toBe(3);
    expect(warnings).toEqual([`${OLD} is deprecated: rename it ${NEW}`]);
    expect(intEnv(withRenamed({ [OLD]: '3', [NEW]: '7' }, NEW, OLD, warn), NEW, 5, 1)).toBe(7);
    expect(warnings[1]).toBe(`${OLD} is ignored: ${NEW} is set`);
    expect(withRenamed({}, NEW, OLD, warn)).toEqual({});
    expect(warnings).toHaveLength(2);
    // A malformed old value is reported under the name the operator should now use.
    expect(() => intEnv(withRenamed({ [OLD]: 'x' }, NEW, OLD, warn), NEW, 5, 1)).toThrow(new RegExp(NEW));
  });

  it('fails fast naming the variable, and rejects malformed values instead of defaulting', () => {
    expect(() => requireEnv({}, 'NOTEBOOK_JOBS_TABLE')).toThrow(
      /missing required environment variable NOTEBOOK_JOBS_TABLE/,
    );
    expect(() => requireEnv({ NOTEBOOK_JOBS_TABLE: '' }, 'NOTEBOOK_JOBS_TABLE')).toThrow(ConfigError);
    expect(requireEnv({ NOTEBOOK_JOBS_TABLE: 'jobs' }, 'NOTEBOOK_JOBS_TABLE')).toBe('jobs');
    expect(intEnv({}, 'PORT', 8080, 0, 65535)).toBe(8080);
    expect(intEnv({ PORT: '9000' }, 'PORT', 8080, 0, 65535)).toBe(9000);
    for (const bad of ['80a', '1.5', '-1', '70000']) {
      expect(() => intEnv({ PORT: bad }, 'PORT', 8080, 0, 65535), bad).toThrow(
        /PORT must be an integer from 0 to 65535/,
      );
    }
    expect(oneOfEnv({}, 'ENGINE', ['auto', 'nbclient'] as const, 'auto')).toBe('auto');
    expect(() => oneOfEnv({ ENGINE: 'spark' }, 'ENGINE', ['auto', 'nbclient'] as const, 'auto')).toThrow(
      /ENGINE must be one of auto, nbclient, got "spark"/,
    );
  });
});
