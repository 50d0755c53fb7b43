/**
 * Opaque, tamper-proof cursors. Adapters produce plain continuation strings (a DynamoDB key, a
 * byte offset); the service signs them with a server secret and a scope (which job, which query),
 * so a forged or re-targeted cursor is refused with a clear 400 instead of reading the wrong data.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidRequestError } from './errors.ts';

export class CursorCodec {
  constructor(private readonly secret: string) {
    if (secret.length < 16) throw new Error('cursor secret must be at least 16 characters');
  }

  encode(scope: string, value: string): string {
    const payload = Buffer.from(value, 'utf8').toString('base64url');
    return `${payload}.${this.mac(scope, payload)}`;
  }

  decode(scope: string, cursor: string): string {
    const [payload, mac, extra] = cursor.split('.');
    if (payload === undefined || mac === undefined || extra !== undefined) throw invalid();
    // Compare the MAC text itself: base64url decoding would ignore stray characters.
    const expected = Buffer.from(this.mac(scope, payload), 'utf8');
    const given = Buffer.from(mac, 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw invalid();
    return Buffer.from(payload, 'base64url').toString('utf8');
  }

  private mac(scope: string, payload: string): string {
    return createHmac('sha256', this.secret)
      .update(`${scope}\n${payload}`)
      .digest()
      .subarray(0, 16)
      .toString('base64url');
  }
}

function invalid(): InvalidRequestError {
  return new InvalidRequestError(
    'cursor is invalid: pass back the next_cursor value from a previous response of the same request unchanged',
  );
}
