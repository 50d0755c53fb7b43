/**
 * Small stand-ins for the AWS services the runner calls that cannot run here: STS AssumeRole (query
 * protocol, XML answer) and EventBridge PutEvents (JSON 1.1), plus a recording proxy in front of
 * dynalite. Each records the access key id that signed every request, so a test can tell which
 * credentials a process really used. Reached through the SDK's own AWS_ENDPOINT_URL_<SERVICE>.
 */
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The access key id in a SigV4 Authorization header. */
export function signedBy(req: IncomingMessage): string | null {
  return /Credential=([^/]+)\//.exec(String(req.headers.authorization ?? ''))?.[1] ?? null;
}

export interface AssumeRoleCall {
  signedBy: string | null;
  params: Record<string, string>;
}

export interface FakeAws {
  url: string;
  assumeRoleCalls: AssumeRoleCall[];
  putEvents: Array<{ signedBy: string | null; entries: Array<Record<string, unknown>> }>;
  close(): Promise<void>;
}

/**
 * STS and EventBridge on one port. `accessKeyFor` picks the access key id of the credentials an
 * AssumeRole call gets (secret and token are derived from it).
 */
export async function startFakeAws(
  accessKeyFor: (params: Record<string, string>) => string,
): Promise<FakeAws> {
  const assumeRoleCalls: AssumeRoleCall[] = [];
  const putEvents: FakeAws['putEvents'] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (req.headers['x-amz-target'] === 'AWSEvents.PutEvents') {
        const entries = (JSON.parse(body) as { Entries: Array<Record<string, unknown>> }).Entries;
        putEvents.push({ signedBy: signedBy(req), entries });
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(
          JSON.stringify({ FailedEntryCount: 0, Entries: entries.map((_, i) => ({ EventId: `e${i}` })) }),
        );
        return;
      }
      const params = Object.fromEntries(new URLSearchParams(body));
      if (params.Action !== 'AssumeRole') {
        res.writeHead(400).end();
        return;
      }
      assumeRoleCalls.push({ signedBy: signedBy(req), params });
      const key = accessKeyFor(params);
      const expiration = new Date(Date.now() + 3_600_000).toISOString();
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(
        `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>` +
          `<Credentials><AccessKeyId>${key}</AccessKeyId><SecretAccessKey>secret-${key}</SecretAccessKey>` +
          `<SessionToken>token-${key}</SessionToken><Expiration>${expiration}</Expiration></Credentials>` +
          `<AssumedRoleUser><Arn>${params.RoleArn}/${params.RoleSessionName}</Arn><AssumedRoleId>AROA:${params.RoleSessionName}</AssumedRoleId></AssumedRoleUser>` +
          `</AssumeRoleResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></AssumeRoleResponse>`,
      );
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    assumeRoleCalls,
    putEvents,
    close: () => new Promise((done) => server.close(() => done())),
  };
}

/** An HTTP proxy to `target` that records who signed each request (DynamoDB in front of dynalite). */
export async function startRecordingProxy(
  target: string,
): Promise<{ url: string; signers: Array<string | null>; close(): Promise<void> }> {
  const signers: Array<string | null> = [];
  const to = new URL(target);
  const server = createServer((req, res) => {
    signers.push(signedBy(req));
    const forward = httpRequest(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.writeHead(502).end());
    req.pipe(forward);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    signers,
    close: () => new Promise((done) => server.close(() => done())),
  };
}
