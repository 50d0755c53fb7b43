/**
 * Uploads in local mode: the upload URL is this server's own `PUT /v1/uploads/{token}`, where the
 * token is signed and carries the artifact key and its expiry (the local stand-in for a presigned
 * S3 PUT URL).
 */
import { AppError, InvalidRequestError, PayloadTooLargeError } from '../core/errors.ts';
import type { CursorCodec } from '../core/cursor.ts';
import type { Artifacts, Clock, UploadUrls } from '../core/ports.ts';

const SCOPE = 'upload';

export class LocalUploads implements UploadUrls {
  private baseUrl = '';

  constructor(
    private readonly deps: { cursors: CursorCodec; artifacts: Artifacts; clock: Clock; maxBytes: number },
  ) {}

  /** Set once the server listens (the URL is only known then). */
  setBaseUrl(url: string): void {
    this.baseUrl = url;
  }

  async create(key: string, expiresAt: Date): Promise<string> {
    const token = this.deps.cursors.encode(SCOPE, JSON.stringify({ key, exp: expiresAt.getTime() }));
    return `${this.baseUrl}/v1/uploads/${token}`;
  }

  /** Stores the body of a PUT to an upload URL; returns the URI to submit. */
  async accept(token: string, body: Buffer | null): Promise<{ notebook_uri: string; size: number }> {
    let target: { key: string; exp: number };
    try {
      target = JSON.parse(this.deps.cursors.decode(SCOPE, token)) as { key: string; exp: number };
    } catch {
      throw new InvalidRequestError(
        'upload URL is invalid: use the upload_url from POST /v1/uploads unchanged',
      );
    }
    if (this.deps.clock.now().getTime() > target.exp) {
      throw new AppError('not_found', 'upload URL has expired; request a new one with POST /v1/uploads');
    }
    if (!body || body.length === 0)
      throw new InvalidRequestError('upload body is empty; PUT the notebook file');
    if (body.length > this.deps.maxBytes) {
      throw new PayloadTooLargeError(
        `upload is ${body.length} bytes; the limit is ${this.deps.maxBytes} bytes`,
      );
    }
    return { notebook_uri: await this.deps.artifacts.put(target.key, body), size: body.length };
  }
}
