/**
 * A tiny S3-compatible server for tests of the runner's AWS mode and the log-page bench: path-style
 * PutObject, GetObject, HeadObject and ListObjectsV2 (prefix, max-keys, continuation) on an
 * in-memory map, with S3's NoSuchKey error. Only what the runner and the log reader call.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { signedBy } from './fake-aws.ts';

export interface FakeS3 {
  url: string;
  /** "bucket/key" -> body */
  objects: Map<string, Buffer>;
  /** Every request: method, "bucket/key" (a list: "bucket?prefix=...") and who signed it. */
  requests: Array<{ method: string; path: string; signedBy: string | null }>;
  close(): Promise<void>;
}

export async function startFakeS3(): Promise<FakeS3> {
  const objects = new Map<string, Buffer>();
  const requests: FakeS3['requests'] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://s3.test');
    const path = decodeURIComponent(url.pathname.slice(1));
    if (req.method === 'GET' && url.searchParams.get('list-type') === '2') {
      const bucket = path.replace(/\/$/, ''); // the SDK asks for "/bucket/?list-type=2..."
      const prefix = url.searchParams.get('prefix') ?? '';
      requests.push({ method: 'LIST', path: `${bucket}?prefix=${prefix}`, signedBy: signedBy(req) });
      res.writeHead(200, { 'content-type': 'application/xml' });
      res.end(listObjects(objects, bucket, prefix, url.searchParams));
      return;
    }
    requests.push({ method: req.method ?? '', path, signedBy: signedBy(req) });
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = objects.get(path);
      if (req.method === 'PUT') {
        objects.set(path, Buffer.concat(chunks));
        res.writeHead(200, { ETag: '"fake"' }).end();
      } else if ((req.method === 'GET' || req.method === 'HEAD') && body) {
        res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
        res.end(req.method === 'GET' ? body : undefined);
      } else if (req.method === 'GET' || req.method === 'HEAD') {
        res.writeHead(404, { 'content-type': 'application/xml' });
        res.end(
          req.method === 'GET'
            ? `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>${path}</Key></Error>`
            : undefined,
        );
      } else {
        res.writeHead(501).end();
      }
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    objects,
    requests,
    close: () => new Promise((done) => server.close(() => done())),
  };
}

const xml = (text: string) =>
  text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** ListObjectsV2: keys in UTF-8 binary order after the continuation token, at most max-keys. */
function listObjects(
  objects: Map<string, Buffer>,
  bucket: string,
  prefix: string,
  params: URLSearchParams,
): string {
  const maxKeys = Math.min(Number(params.get('max-keys') ?? 1000), 1000);
  const after = params.get('continuation-token') ?? params.get('start-after') ?? '';
  const keys = [...objects.keys()]
    .filter((path) => path.startsWith(`${bucket}/${prefix}`))
    .map((path) => path.slice(bucket.length + 1))
    .filter((key) => key > after)
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const page = keys.slice(0, maxKeys);
  const truncated = keys.length > page.length;
  const contents = page
    .map(
      (key) =>
        `<Contents><Key>${xml(key)}</Key><Size>${objects.get(`${bucket}/${key}`)?.length}</Size></Contents>`,
    )
    .join('');
  return (
    `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
    `<Name>${xml(bucket)}</Name><Prefix>${xml(prefix)}</Prefix><KeyCount>${page.length}</KeyCount>` +
    `<MaxKeys>${maxKeys}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${contents}` +
    (truncated ? `<NextContinuationToken>${xml(page.at(-1) ?? '')}</NextContinuationToken>` : '') +
    `</ListBucketResult>`
  );
}
