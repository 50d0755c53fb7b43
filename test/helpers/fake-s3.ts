/**
 * A tiny S3-compatible server for tests of the runner's AWS mode: path-style PutObject, GetObject
 * and HeadObject on an in-memory map, with S3's NoSuchKey error. Only what the runner calls.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { signedBy } from './fake-aws.ts';

export interface FakeS3 {
  url: string;
  /** "bucket/key" -> body */
  objects: Map<string, Buffer>;
  /** Every request: method, "bucket/key" and the access key id that signed it. */
  requests: Array<{ method: string; path: string; signedBy: string | null }>;
  close(): Promise<void>;
}

export async function startFakeS3(): Promise<FakeS3> {
  const objects = new Map<string, Buffer>();
  const requests: FakeS3['requests'] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://s3.test').pathname.slice(1));
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
