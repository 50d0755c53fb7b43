/**
 * S3 artifacts and upload URLs against a mocked S3 client (aws-sdk-client-mock): the exact commands
 * sent, which URIs may be read, paginated deletes, and presigned URLs (signed offline with fake
 * credentials, so their shape can be checked without AWS).
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseTenantSources, S3Artifacts, S3UploadUrls } from '../../lambda/adapters/aws/s3-artifacts.ts';
import { InvalidRequestError, NotFoundError } from '../../lambda/core/errors.ts';
import { MonotonicJobIds } from '../../lambda/core/ids.ts';

const BUCKET = 'nbj-artifacts-123';
const client = new S3Client({
  region: 'eu-west-1',
  credentials: { accessKeyId: 'AKIAEXAMPLEEXAMPLE12', secretAccessKey: 'fake-secret' },
});
const s3 = mockClient(client);
const ids = new MonotonicJobIds();
const artifacts = new S3Artifacts(client, {
  bucket: BUCKET,
  tenantSources: { acme: ['s3://team-notebooks/ml/'], '*': ['s3://shared-notebooks/public/'] },
});

/** A GetObject body as the SDK hands it out (only the method the adapter uses). */
const body = (text: string) => ({ transformToByteArray: async () => new TextEncoder().encode(text) }) as any;

beforeEach(() => s3.reset());
afterEach(() => void vi.useRealTimers());

describe('S3Artifacts: keys, put, read, exists', () => {
  it('names keys by s3:// URI in its bucket and rejects keys that leave their prefix', () => {
    expect(artifacts.uriFor('inputs/job_1/train.ipynb')).toBe(`s3://${BUCKET}/inputs/job_1/train.ipynb`);
    for (const key of ['', '/inputs/x.ipynb', 'inputs/../outputs/x', 'inputs//x', './x']) {
      expect(() => artifacts.uriFor(key)).toThrow(InvalidRequestError);
    }
  });

  it('puts a notebook with its content type and returns its URI', async () => {
    s3.on(PutObjectCommand).resolves({});

    const uri = await artifacts.put('outputs/job_1/train.ipynb', '{"cells":[]}');

    expect(uri).toBe(`s3://${BUCKET}/outputs/job_1/train.ipynb`);
    expect(s3.commandCalls(PutObjectCommand)[0]!.args[0].input).toEqual({
      Bucket: BUCKET,
      Key: 'outputs/job_1/train.ipynb',
      Body: '{"cells":[]}',
      ContentType: 'application/x-ipynb+json',
    });
  });

  it('puts rendered HTML as text/html', async () => {
    s3.on(PutObjectCommand).resolves({});
    const html = Buffer.from('<html></html>');

    await artifacts.put('outputs/job_1/train.html', html);

    expect(s3.commandCalls(PutObjectCommand)[0]!.args[0].input).toEqual({
      Bucket: BUCKET,
      Key: 'outputs/job_1/train.html',
      Body: html,
      ContentType: 'text/html; charset=utf-8',
    });
  });

  it('reads its own artifacts by URI, and nothing outside its bucket', async () => {
    s3.on(GetObjectCommand, { Bucket: BUCKET }).resolves({ Body: body('own') });
    expect((await artifacts.read(`s3://${BUCKET}/inputs/acme/job_1/a b.ipynb`)).toString()).toBe('own');
    await expect(artifacts.read('s3://team-notebooks/ml/train.ipynb')).rejects.toBeInstanceOf(
      InvalidRequestError,
    );
    expect(s3.commandCalls(GetObjectCommand).map((c) => c.args[0].input)).toEqual([
      { Bucket: BUCKET, Key: 'inputs/acme/job_1/a b.ipynb' },
    ]);
  });

  it('lets a tenant submit its own uploads and its allowed prefixes only', async () => {
    s3.on(GetObjectCommand).callsFake((input) => ({ Body: body(`${input.Bucket}/${input.Key}`) }));
    const allowed = [
      `s3://${BUCKET}/uploads/acme/0a1b/train.ipynb`,
      's3://team-notebooks/ml/train.ipynb',
      's3://shared-notebooks/public/x.ipynb',
    ];
    for (const uri of allowed)
      expect((await artifacts.readSubmitted('acme', uri, 1024)).toString()).toBe(uri.slice(5));
    expect(s3.calls()).toHaveLength(3);
    s3.resetHistory();

    // Another tenant's upload is "not found"; everything else names what may be submitted.
    const theirs = artifacts.readSubmitted('other', `s3://${BUCKET}/uploads/acme/0a1b/train.ipynb`, 1024);
    await expect(theirs).rejects.toBeInstanceOf(NotFoundError);
    for (const uri of [
      `s3://${BUCKET}/outputs/acme/job_1/train.ipynb`, // another job's executed notebook
      `s3://${BUCKET}/inputs/acme/job_1/train.ipynb`,
      `s3://${BUCKET}/uploads/acme/../other/x.ipynb`,
      `s3://${BUCKET}/uploads/acme//x.ipynb`,
      's3://team-notebooks/ml-private/x.ipynb', // shares the allowed prefix's name
      's3://team-notebooks/other/x.ipynb',
      's3://someone-else/secret.ipynb',
    ]) {
      const read = artifacts.readSubmitted('acme', uri, 1024);
      await expect(read, uri).rejects.toBeInstanceOf(InvalidRequestError);
    }
    await expect(
      artifacts.readSubmitted('other', 's3://team-notebooks/ml/train.ipynb', 1024),
    ).rejects.toThrow(
      'may not be submitted by this tenant: submit notebooks by upload (POST /v1/uploads) or from s3://shared-notebooks/public/',
    );
    await expect(artifacts.readSubmitted('acme', 'https://example.com/x.ipynb', 1024)).rejects.toThrow(
      'unsupported notebook URI: this deployment reads s3:// URIs; submit notebooks by upload (POST /v1/uploads) or from s3://shared-notebooks/public/, s3://team-notebooks/ml/',
    );
    expect(s3.calls()).toHaveLength(0);
  });

  it('refuses an object over the size limit from its Content-Length, without reading its body', async () => {
    const read = vi.fn(async () => new Uint8Array(10));
    const destroy = vi.fn();
    s3.on(GetObjectCommand).resolves({
      ContentLength: 2048,
      Body: { transformToByteArray: read, destroy } as any,
    });
    const uri = `s3://${BUCKET}/uploads/acme/abc/big.ipynb`;

    await expect(artifacts.readSubmitted('acme', uri, 1024)).rejects.toThrow(
      `${uri} is 2048 bytes; the limit is 1024 bytes`,
    );
    expect(read).not.toHaveBeenCalled();
    expect(destroy).toHaveBeenCalledOnce();
    await expect(artifacts.readSubmitted('acme', uri, 4096)).resolves.toHaveLength(10);
  });

  it('validates tenant sources: s3:// prefixes ending in "/" with plain names', () => {
    expect(parseTenantSources('{"acme": ["s3://b-1/x/"], "*": []}')).toEqual({
      acme: ['s3://b-1/x/'],
      '*': [],
    });
    for (const bad of [
      '[]',
      '{"a": "s3://b/x/"}',
      '{"a": ["s3://b/x"]}',
      '{"a": ["s3://b/../x/"]}',
      'nope',
    ]) {
      expect(() => parseTenantSources(bad), bad).toThrow();
    }
  });

  it('turns a missing object into NotFoundError naming the URI', async () => {
    s3.on(GetObjectCommand).rejects(
      new NoSuchKey({ message: 'The specified key does not exist.', $metadata: {} }),
    );

    const read = artifacts.read(`s3://${BUCKET}/inputs/job_1/gone.ipynb`);
    await expect(read).rejects.toBeInstanceOf(NotFoundError);
    await expect(read).rejects.toThrow(`no object at s3://${BUCKET}/inputs/job_1/gone.ipynb`);
  });

  it('says access was denied for an allowed bucket this deployment cannot actually read', async () => {
    s3.on(GetObjectCommand).rejects(
      new S3ServiceException({
        name: 'AccessDenied',
        $fault: 'client',
        message: 'Access Denied',
        $metadata: {},
      }),
    );
    await expect(artifacts.readSubmitted('acme', 's3://team-notebooks/ml/x.ipynb', 1024)).rejects.toThrow(
      "access denied reading s3://team-notebooks/ml/x.ipynb: this deployment's role may not read that object",
    );
  });

  it('exists: HeadObject; a 404 is false; foreign URIs are false without a call; other errors surface', async () => {
    const uri = `s3://${BUCKET}/outputs/job_1/train.ipynb`;
    s3.on(HeadObjectCommand)
      .resolvesOnce({ ContentLength: 10 })
      .rejectsOnce(new NotFound({ message: 'NotFound', $metadata: { httpStatusCode: 404 } }))
      .rejectsOnce(
        new S3ServiceException({
          name: 'Forbidden',
          $fault: 'client',
          message: 'Forbidden',
          $metadata: { httpStatusCode: 403 },
        }),
      );

    expect(await artifacts.exists(uri)).toBe(true);
    expect(await artifacts.exists(uri)).toBe(false);
    expect(await artifacts.exists('s3://someone-else/x.ipynb')).toBe(false);
    expect(s3.commandCalls(HeadObjectCommand).map((c) => c.args[0].input)).toEqual([
      { Bucket: BUCKET, Key: 'outputs/job_1/train.ipynb' },
      { Bucket: BUCKET, Key: 'outputs/job_1/train.ipynb' },
    ]);
    await expect(artifacts.exists(uri)).rejects.toThrow('Forbidden');
  });
});

describe('S3Artifacts.listSubmitted', () => {
  it('lists an allowed prefix page by page, with paths relative to it, skipping folder markers and caches', async () => {
    s3.on(ListObjectsV2Command, { Bucket: 'team-notebooks', Prefix: 'ml/run/', ContinuationToken: undefined })
      .resolves({
        Contents: [
          { Key: 'ml/run/', Size: 0 },
          { Key: 'ml/run/data/sales.csv', Size: 120 },
          { Key: 'ml/run/__pycache__/utils.cpython-312.pyc', Size: 900 },
        ],
        IsTruncated: true,
        NextContinuationToken: 'page-2',
      })
      .on(ListObjectsV2Command, { Bucket: 'team-notebooks', Prefix: 'ml/run/', ContinuationToken: 'page-2' })
      .resolves({ Contents: [{ Key: 'ml/run/utils.py', Size: 42 }], IsTruncated: false });

    const files = await artifacts.listSubmitted('acme', 's3://team-notebooks/ml/run/', 10);

    expect(files).toEqual([
      { path: 'data/sales.csv', uri: 's3://team-notebooks/ml/run/data/sales.csv', size: 120 },
      { path: 'utils.py', uri: 's3://team-notebooks/ml/run/utils.py', size: 42 },
    ]);
    expect(s3.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input)).toEqual([
      { Bucket: 'team-notebooks', Prefix: 'ml/run/', ContinuationToken: undefined },
      { Bucket: 'team-notebooks', Prefix: 'ml/run/', ContinuationToken: 'page-2' },
    ]);
  });

  it('refuses more files than the cap, naming the setting', async () => {
    s3.on(ListObjectsV2Command).resolves({
      Contents: [1, 2, 3].map((n) => ({ Key: `public/f${n}.csv`, Size: 1 })),
      IsTruncated: false,
    });
    await expect(artifacts.listSubmitted('acme', 's3://shared-notebooks/public/', 2)).rejects.toThrow(
      /more than 2 files.*NOTEBOOK_JOBS_MAX_INPUT_FILES/,
    );
  });

  it.each([
    ["another tenant's source prefix", 'globex', 's3://team-notebooks/ml/', InvalidRequestError],
    ['a sibling of an allowed prefix', 'acme', 's3://team-notebooks/ml-private/', InvalidRequestError],
    ['a bucket nobody allowed', 'acme', 's3://other-bucket/ml/', InvalidRequestError],
    ['a path climbing out', 'acme', 's3://team-notebooks/ml/../secret/', InvalidRequestError],
    ["the deployment's own job folders", 'acme', `s3://${BUCKET}/inputs/acme/`, InvalidRequestError],
    ["another tenant's uploads", 'acme', `s3://${BUCKET}/uploads/globex/`, NotFoundError],
    ['a URI not ending in "/"', 'acme', 's3://team-notebooks/ml/run', InvalidRequestError],
  ])('refuses %s without calling S3', async (_what, tenant, uri, type) => {
    await expect(artifacts.listSubmitted(tenant, uri, 10)).rejects.toThrow(type);
    expect(s3.calls()).toHaveLength(0);
  });
});

describe('S3Artifacts.deleteJob', () => {
  it('lists and deletes everything under the job inputs and outputs, page by page', async () => {
    const jobId = ids.jobId();
    const pages: Record<
      string,
      { Contents: { Key: string }[]; IsTruncated: boolean; NextContinuationToken?: string }
    > = {
      [`inputs/acme/${jobId}/`]: {
        Contents: [{ Key: `inputs/acme/${jobId}/a.ipynb` }, { Key: `inputs/acme/${jobId}/b.ipynb` }],
        IsTruncated: true,
        NextContinuationToken: 'page-2',
      },
      [`inputs/acme/${jobId}/page-2`]: {
        Contents: [{ Key: `inputs/acme/${jobId}/c.ipynb` }],
        IsTruncated: false,
      },
      [`outputs/acme/${jobId}/`]: {
        Contents: [{ Key: `outputs/acme/${jobId}/a.ipynb` }, { Key: `outputs/acme/${jobId}/a.html` }],
        IsTruncated: false,
      },
    };
    s3.on(ListObjectsV2Command).callsFake(
      (input) => pages[`${input.Prefix}${input.ContinuationToken ?? ''}`],
    );
    s3.on(DeleteObjectsCommand).resolves({ Deleted: [] });

    await artifacts.deleteJob('acme', jobId);

    expect(s3.commandCalls(ListObjectsV2Command).map((c) => c.args[0].input)).toEqual([
      { Bucket: BUCKET, Prefix: `inputs/acme/${jobId}/`, ContinuationToken: undefined },
      { Bucket: BUCKET, Prefix: `inputs/acme/${jobId}/`, ContinuationToken: 'page-2' },
      { Bucket: BUCKET, Prefix: `outputs/acme/${jobId}/`, ContinuationToken: undefined },
    ]);
    expect(s3.commandCalls(DeleteObjectsCommand).map((c) => c.args[0].input)).toEqual([
      {
        Bucket: BUCKET,
        Delete: {
          Objects: [{ Key: `inputs/acme/${jobId}/a.ipynb` }, { Key: `inputs/acme/${jobId}/b.ipynb` }],
          Quiet: true,
        },
      },
      { Bucket: BUCKET, Delete: { Objects: [{ Key: `inputs/acme/${jobId}/c.ipynb` }], Quiet: true } },
      {
        Bucket: BUCKET,
        Delete: {
          Objects: [{ Key: `outputs/acme/${jobId}/a.ipynb` }, { Key: `outputs/acme/${jobId}/a.html` }],
          Quiet: true,
        },
      },
    ]);
  });

  it('sends no delete for an empty prefix', async () => {
    s3.on(ListObjectsV2Command).resolves({ KeyCount: 0, IsTruncated: false });
    await artifacts.deleteJob('acme', ids.jobId());
    expect(s3.commandCalls(ListObjectsV2Command)).toHaveLength(2);
    expect(s3.commandCalls(DeleteObjectsCommand)).toHaveLength(0);
  });

  it('fails when S3 could not delete some objects', async () => {
    const jobId = ids.jobId();
    s3.on(ListObjectsV2Command).resolves({
      Contents: [{ Key: `inputs/acme/${jobId}/a.ipynb` }],
      IsTruncated: false,
    });
    s3.on(DeleteObjectsCommand).resolves({
      Errors: [{ Key: `inputs/acme/${jobId}/a.ipynb`, Code: 'AccessDenied', Message: 'Access Denied' }],
    });
    await expect(artifacts.deleteJob('acme', jobId)).rejects.toThrow(
      `could not delete 1 objects of job ${jobId}: inputs/acme/${jobId}/a.ipynb: AccessDenied Access Denied`,
    );
  });

  it('refuses anything that is not a job id (it becomes a key prefix)', async () => {
    for (const bad of ['', 'job_1', '../', `${ids.jobId()}/..`]) {
      await expect(artifacts.deleteJob('acme', bad)).rejects.toBeInstanceOf(InvalidRequestError);
    }
    expect(s3.calls()).toHaveLength(0);
  });
});

describe('presigned URLs', () => {
  it('downloadUrl: a GET URL for the object, valid for the given time, signing only the host', async () => {
    const url = new URL(await artifacts.downloadUrl(`s3://${BUCKET}/outputs/job_1/my nb.ipynb`, 900));

    expect(url.protocol).toBe('https:');
    expect(url.host).toBe(`${BUCKET}.s3.eu-west-1.amazonaws.com`);
    expect(url.pathname).toBe('/outputs/job_1/my%20nb.ipynb');
    const q = url.searchParams;
    expect(q.get('X-Amz-Algorithm')).toBe('AWS4-HMAC-SHA256');
    expect(q.get('X-Amz-Expires')).toBe('900');
    expect(q.get('X-Amz-SignedHeaders')).toBe('host');
    expect(q.get('X-Amz-Credential')).toMatch(/^AKIAEXAMPLEEXAMPLE12\/\d{8}\/eu-west-1\/s3\/aws4_request$/);
    expect(q.get('X-Amz-Signature')).toMatch(/^[0-9a-f]{64}$/);
    expect(q.get('x-id')).toBe('GetObject');
    expect([...q.keys()].filter((k) => /checksum/i.test(k))).toEqual([]);
    expect(s3.calls()).toHaveLength(0); // signing is local
  });

  it('downloadUrl refuses objects outside its own bucket', async () => {
    await expect(artifacts.downloadUrl('s3://team-notebooks/x.ipynb', 900)).rejects.toThrow(
      `no download URL for s3://team-notebooks/x.ipynb: only objects in s3://${BUCKET}/ are served`,
    );
  });

  it('upload URL: a PUT URL for exactly that key without baked-in checksums or content type', async () => {
    const uploads = new S3UploadUrls(client, { bucket: BUCKET });

    const url = new URL(await uploads.create('uploads/0a1b/train.ipynb', new Date(Date.now() + 900_000)));

    expect(url.host).toBe(`${BUCKET}.s3.eu-west-1.amazonaws.com`);
    expect(url.pathname).toBe('/uploads/0a1b/train.ipynb');
    const q = url.searchParams;
    expect(q.get('x-id')).toBe('PutObject');
    expect(q.get('X-Amz-Expires')).toBe('900');
    // Only the host is signed: a PUT with any Content-Type (or none) matches the signature, and no
    // checksum of the (empty at signing time) body is baked in.
    expect(q.get('X-Amz-SignedHeaders')).toBe('host');
    expect([...q.keys()].filter((k) => /checksum|content-type/i.test(k))).toEqual([]);
  });

  it('signs the same URLs the SDK signs when told to add no checksums (so they stay valid)', async () => {
    // A client configured to leave checksums out is the SDK's own answer; the adapter must match it
    // while working with any client it is given.
    const plain = new S3Client({
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIAEXAMPLEEXAMPLE12', secretAccessKey: 'fake-secret' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    vi.useFakeTimers({ now: new Date('2026-05-01T10:00:00Z') });
    const put = await new S3UploadUrls(client, { bucket: BUCKET }).create(
      'uploads/0a1b/train.ipynb',
      new Date(Date.now() + 600_000),
    );
    const get = await artifacts.downloadUrl(`s3://${BUCKET}/outputs/job_1/train.ipynb`, 600);
    expect(put).toBe(
      await getSignedUrl(plain, new PutObjectCommand({ Bucket: BUCKET, Key: 'uploads/0a1b/train.ipynb' }), {
        expiresIn: 600,
      }),
    );
    expect(get).toBe(
      await getSignedUrl(plain, new GetObjectCommand({ Bucket: BUCKET, Key: 'outputs/job_1/train.ipynb' }), {
        expiresIn: 600,
      }),
    );
  });

  it('upload URL refuses an expiry in the past or beyond what SigV4 allows', async () => {
    const uploads = new S3UploadUrls(client, { bucket: BUCKET });
    await expect(uploads.create('uploads/x/a.ipynb', new Date(Date.now() - 1000))).rejects.toThrow(
      'a presigned URL must last 1 to 604800 s',
    );
    await expect(uploads.create('uploads/x/a.ipynb', new Date(Date.now() + 8 * 86400_000))).rejects.toThrow(
      'a presigned URL must last 1 to 604800 s',
    );
    await expect(uploads.create('../x.ipynb', new Date(Date.now() + 60_000))).rejects.toBeInstanceOf(
      InvalidRequestError,
    );
  });
});
