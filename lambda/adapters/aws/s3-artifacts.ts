/**
 * Notebooks in S3 (AWS mode): relative keys ("inputs/<tenant>/<job>/x.ipynb") live in one bucket
 * and are named by s3:// URIs. Callers may submit only their own uploads and the external prefixes
 * their tenant is allowed (TenantSources), and nothing else.
 * Presigned URLs let callers download outputs and upload notebooks without going through Lambda.
 */
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { checkSize, InvalidRequestError, NotFoundError } from '../../core/errors.ts';
import { JOB_ID_PATTERN } from '../../core/ids.ts';
import { checkArtifactKey, jobKeyPrefixes, uploadsPrefix } from '../../core/job.ts';
import type { Artifacts, SubmittedFile, UploadUrls } from '../../core/ports.ts';
import { SKIPPED_FOLDERS } from '../../core/job-files.ts';

/** SigV4 presigned URLs are valid for at most 7 days. */
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

const CONTENT_TYPES: Record<string, string> = {
  '.ipynb': 'application/x-ipynb+json',
  '.html': 'text/html; charset=utf-8',
  '.json': 'application/json',
};

function contentTypeOf(key: string): string {
  const ext = /\.[^./]+$/.exec(key)?.[0]?.toLowerCase() ?? '';
  return CONTENT_TYPES[ext] ?? 'application/octet-stream';
}

/** Bucket and key of an s3:// URI, or null when it is not one. */
export function parseS3Uri(uri: string): { bucket: string; key: string } | null {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(uri);
  return match ? { bucket: match[1] as string, key: match[2] as string } : null;
}

interface AwsErrorShape {
  name?: string;
  $metadata?: { httpStatusCode?: number };
}

const errorName = (error: unknown) => (error as AwsErrorShape).name;
const httpStatus = (error: unknown) => (error as AwsErrorShape).$metadata?.httpStatusCode;

/**
 * The SDK adds flexible-checksum headers (a CRC32 of the still empty body for PUT, checksum mode for
 * GET) which the presigner would bake into the URL's query: a PUT of the real notebook would then
 * fail its checksum. Presigned commands drop them before signing, so the URL carries only what the
 * caller's request can honour.
 */
function dropChecksumHeaders(request: unknown): void {
  const headers = (request as { headers?: Record<string, string> }).headers ?? {};
  for (const name of Object.keys(headers)) {
    if (/^x-amz-(checksum-|sdk-checksum-)/i.test(name)) delete headers[name];
  }
}

const DROP_CHECKSUMS = {
  step: 'build',
  priority: 'low',
  name: 'notebookJobsPresignWithoutChecksums',
} as const;

function presignSeconds(seconds: number): number {
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PRESIGN_SECONDS)
    throw new Error(`a presigned URL must last 1 to ${MAX_PRESIGN_SECONDS} s, got ${seconds}`);
  return seconds;
}

/**
 * Per tenant, the external s3:// prefixes its callers may submit notebooks from (each ends in "/");
 * the key "*" applies to every tenant. Operators set it (NOTEBOOK_JOBS_TENANT_SOURCES) and grant the
 * API's role read access to the same prefixes.
 */
export type TenantSources = Readonly<Record<string, readonly string[]>>;

/**
 * Validates tenant sources given as an object or its JSON text: tenant (or "*") -> list of
 * `s3://bucket/prefix/` (ending in "/", so a prefix never matches a longer sibling name). Throws an
 * Error saying what is wrong; callers name the setting.
 */
export function parseTenantSources(value: unknown): TenantSources {
  let parsed = value;
  if (typeof value === 'string') {
    try {
      parsed = JSON.parse(value);
    } catch {
      throw new Error('must be a JSON object like {"acme": ["s3://acme-data/notebooks/"]}');
    }
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new Error('must be an object of tenant -> list of s3:// prefixes');
  for (const [tenant, prefixes] of Object.entries(parsed)) {
    if (!Array.isArray(prefixes)) throw new Error(`"${tenant}" must map to a list of s3:// prefixes`);
    for (const prefix of prefixes) {
      const location = typeof prefix === 'string' ? parseS3Uri(prefix) : null;
      if (!location || !prefix.endsWith('/') || !isPlainKey(location.key))
        throw new Error(
          `"${tenant}": ${JSON.stringify(prefix)} is not an s3://bucket/prefix/ ending in "/" with plain names`,
        );
    }
  }
  return parsed as TenantSources;
}

function isPlainKey(prefix: string): boolean {
  try {
    checkArtifactKey(prefix, { folder: true });
    return true;
  } catch {
    return false;
  }
}

export class S3Artifacts implements Artifacts {
  constructor(
    private readonly s3: S3Client,
    private readonly config: {
      bucket: string;
      tenantSources?: TenantSources;
    },
  ) {}

  uriFor(key: string): string {
    return `s3://${this.config.bucket}/${checkArtifactKey(key)}`;
  }

  async put(key: string, body: Buffer | string): Promise<string> {
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.config.bucket,
        Key: checkArtifactKey(key),
        Body: body,
        ContentType: contentTypeOf(key),
      }),
    );
    return this.uriFor(key);
  }

  async read(uri: string, maxBytes?: number): Promise<Buffer> {
    const location = parseS3Uri(uri);
    if (!location || location.bucket !== this.config.bucket) {
      throw new InvalidRequestError(`${uri} is not an artifact of this deployment`, { uri });
    }
    return this.getObject(uri, location, maxBytes);
  }

  async readSubmitted(tenant: string, uri: string, maxBytes: number): Promise<Buffer> {
    return this.getObject(uri, this.submittable(tenant, uri), maxBytes);
  }

  async listSubmitted(tenant: string, folderUri: string, maxFiles: number): Promise<SubmittedFile[]> {
    if (!folderUri.endsWith('/'))
      throw new InvalidRequestError(`${folderUri} is not a folder: an s3:// prefix of files ends in "/"`, {
        uri: folderUri,
      });
    const { bucket, key: prefix } = this.submittable(tenant, folderUri, { folder: true });
    const found: SubmittedFile[] = [];
    let token: string | undefined;
    do {
      const page = await this.s3.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const object of page.Contents ?? []) {
        const path = object.Key?.slice(prefix.length) ?? '';
        // Folder markers ("name/") and cache folders are not files of the job.
        if (path === '' || path.endsWith('/') || path.split('/').some((s) => SKIPPED_FOLDERS.has(s)))
          continue;
        if (found.length >= maxFiles)
          throw new InvalidRequestError(
            `${folderUri} holds more than ${maxFiles} files; a job may bring at most ${maxFiles} (NOTEBOOK_JOBS_MAX_INPUT_FILES)`,
            { max_files: maxFiles },
          );
        found.push({ path, uri: `s3://${bucket}/${object.Key}`, size: object.Size ?? 0 });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return found;
  }

  /**
   * The location of a URI a caller named, if the tenant may read it: its own uploads and the
   * external prefixes allowed to it (TenantSources). Else InvalidRequestError saying what may be
   * named; another tenant's upload reads as not found.
   */
  private submittable(
    tenant: string,
    uri: string,
    { folder = false }: { folder?: boolean } = {},
  ): { bucket: string; key: string } {
    const location = parseS3Uri(uri);
    const sources = [
      ...(this.config.tenantSources?.['*'] ?? []),
      ...(this.config.tenantSources?.[tenant] ?? []),
    ];
    const allowed = [`s3://${this.config.bucket}/${uploadsPrefix(tenant)}`, ...sources];
    const what = `submit notebooks by upload (POST /v1/uploads)${sources.length ? ` or from ${sources.join(', ')}` : ''}`;
    if (!location) {
      throw new InvalidRequestError(`unsupported notebook URI: this deployment reads s3:// URIs; ${what}`, {
        uri,
      });
    }
    checkArtifactKey(location.key, { folder });
    const normal = `s3://${location.bucket}/${location.key}`;
    if (!allowed.some((prefix) => normal.startsWith(prefix))) {
      // Another tenant's upload is indistinguishable from a missing one.
      if (location.bucket === this.config.bucket && location.key.startsWith('uploads/'))
        throw new NotFoundError(`no object at ${uri}`, { uri });
      throw new InvalidRequestError(`${uri} may not be submitted by this tenant: ${what}`, { uri });
    }
    return location;
  }

  private async getObject(
    uri: string,
    { bucket, key }: { bucket: string; key: string },
    maxBytes: number | undefined,
  ): Promise<Buffer> {
    try {
      const out = await this.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      if (!out.Body) throw new Error(`S3 returned no body for ${uri}`);
      if (maxBytes !== undefined && out.ContentLength !== undefined) {
        try {
          checkSize(uri, out.ContentLength, maxBytes);
        } catch (error) {
          // Do not download what will be refused: close the response stream.
          (out.Body as { destroy?: () => void }).destroy?.();
          throw error;
        }
      }
      return Buffer.from(await out.Body.transformToByteArray());
    } catch (error) {
      const name = errorName(error);
      if (name === 'NoSuchKey' || name === 'NoSuchBucket')
        throw new NotFoundError(`no object at ${uri}`, { uri });
      if (name === 'AccessDenied' && bucket !== this.config.bucket) {
        throw new InvalidRequestError(
          `access denied reading ${uri}: this deployment's role may not read that object`,
          { uri },
        );
      }
      throw error;
    }
  }

  async exists(uri: string): Promise<boolean> {
    const location = parseS3Uri(uri);
    if (!location || location.bucket !== this.config.bucket) return false;
    try {
      await this.s3.send(new HeadObjectCommand({ Bucket: location.bucket, Key: location.key }));
      return true;
    } catch (error) {
      // HEAD has no error body: a missing object is only a 404 (named NotFound by the SDK).
      if (errorName(error) === 'NotFound' || errorName(error) === 'NoSuchKey' || httpStatus(error) === 404)
        return false;
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: checkArtifactKey(key) }));
  }

  async deleteJob(tenant: string, jobId: string): Promise<void> {
    if (!JOB_ID_PATTERN.test(jobId)) throw new InvalidRequestError(`not a job id: "${jobId}"`);
    for (const prefix of jobKeyPrefixes(tenant, jobId)) {
      let token: string | undefined;
      do {
        const page = await this.s3.send(
          new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: prefix, ContinuationToken: token }),
        );
        // A list page holds at most 1,000 keys, which is also DeleteObjects' limit.
        const objects = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
        if (objects.length > 0) {
          const out = await this.s3.send(
            new DeleteObjectsCommand({
              Bucket: this.config.bucket,
              Delete: { Objects: objects, Quiet: true },
            }),
          );
          if (out.Errors?.length) {
            const first = out.Errors.slice(0, 3)
              .map((e) => `${e.Key}: ${e.Code} ${e.Message ?? ''}`.trim())
              .join('; ');
            throw new Error(`could not delete ${out.Errors.length} objects of job ${jobId}: ${first}`);
          }
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    }
  }

  /** A presigned GET URL for an artifact URI (short-lived). */
  async downloadUrl(uri: string, expiresInSeconds: number): Promise<string> {
    const location = parseS3Uri(uri);
    if (!location || location.bucket !== this.config.bucket) {
      throw new InvalidRequestError(
        `no download URL for ${uri}: only objects in s3://${this.config.bucket}/ are served`,
        { uri },
      );
    }
    const command = new GetObjectCommand({ Bucket: location.bucket, Key: location.key });
    command.middlewareStack.add(
      (next) => async (args) => {
        dropChecksumHeaders(args.request);
        return next(args);
      },
      DROP_CHECKSUMS,
    );
    return getSignedUrl(this.s3, command, { expiresIn: presignSeconds(expiresInSeconds) });
  }
}

/**
 * Upload URLs: a presigned S3 PUT for exactly one key. Only the host is signed, not Content-Type:
 * callers may PUT with any (or no) Content-Type header, since the service reads the notebook by its
 * content. Signing the type would make every PUT without that exact header fail with
 * SignatureDoesNotMatch, a common and confusing failure for `curl -T`.
 */
export class S3UploadUrls implements UploadUrls {
  constructor(
    private readonly s3: S3Client,
    private readonly config: { bucket: string },
  ) {}

  async create(key: string, expiresAt: Date): Promise<string> {
    const seconds = Math.ceil((expiresAt.getTime() - Date.now()) / 1000);
    const command = new PutObjectCommand({ Bucket: this.config.bucket, Key: checkArtifactKey(key) });
    command.middlewareStack.add(
      (next) => async (args) => {
        dropChecksumHeaders(args.request);
        return next(args);
      },
      DROP_CHECKSUMS,
    );
    return getSignedUrl(this.s3, command, { expiresIn: presignSeconds(seconds) });
  }
}
