/**
 * The CLI's files and tokens commands (split from notebook-jobs.ts): packing --files into an uploaded .tar.gz, and tokens create|list|revoke against the deployment's table.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { createGzip } from 'node:zlib';
import { pack as tarPack } from 'tar-stream';
import { globMatcher, RESERVED_FILE_PATHS, SKIPPED_FOLDERS } from '../lambda/core/job-files.ts';
import { Api, CliError, intOption, type Values } from './cli-common.ts';

/**
 * Packs the chosen files of the notebook's folder into a .tar.gz, uploads it (POST /v1/uploads,
 * then PUT), and returns the URI to submit as files.uri. Paths in the archive are relative to the
 * notebook's folder, so the files land beside the notebook in the job's working folder.
 */
export async function uploadFiles(
  api: Api,
  folder: string,
  specs: string[],
  quiet: boolean,
): Promise<string> {
  const all = await listFolder(folder, '');
  const chosen = new Set<string>();
  for (const spec of specs) {
    const matches = spec === '.' || spec === './' ? () => true : globMatcher(relativeSpec(folder, spec));
    const hits = all.filter(matches);
    if (hits.length === 0) throw new CliError(`--files ${spec}: nothing matches in ${folder}`);
    for (const hit of hits) if (!RESERVED_FILE_PATHS.has(hit)) chosen.add(hit);
  }
  const pack = tarPack();
  const gzipped = pack.pipe(createGzip());
  const chunks: Buffer[] = [];
  gzipped.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise((res, rej) => (gzipped.on('end', res), gzipped.on('error', rej)));
  for (const path of [...chosen].sort()) {
    const body = await readFile(join(folder, ...path.split('/')));
    await new Promise<void>((res, rej) =>
      pack.entry({ name: path, size: body.length, mode: 0o644 }, body, (e) => (e ? rej(e) : res())),
    );
  }
  pack.finalize();
  await done;
  const archive = Buffer.concat(chunks);
  const slot = await api.call<{ upload_url: string; notebook_uri: string }>('POST', '/v1/uploads', {
    name: 'files.tar.gz',
  });
  // The local server's upload URL is the service itself (send its token); elsewhere a presigned URL.
  const put = slot.upload_url.startsWith(api.base)
    ? await api.fetch(
        'PUT',
        slot.upload_url.slice(api.base.length),
        undefined,
        { 'content-type': 'application/octet-stream' },
        archive,
      )
    : await fetch(slot.upload_url, { method: 'PUT', body: new Uint8Array(archive) });
  if (!put.ok) throw new CliError(`uploading the files failed: ${put.status} ${await put.text()}`, 1);
  if (!quiet) console.error(`uploaded ${chosen.size} file(s) (${archive.length} bytes packed)`);
  return slot.notebook_uri;
}

/** A --files spec as a path relative to the notebook's folder ('./' dropped; a folder takes its files). */
export function relativeSpec(folder: string, spec: string): string {
  const rel = relative(folder, resolve(folder, spec)).split(sep).join('/');
  if (rel.startsWith('..') || isAbsolute(rel))
    throw new CliError(`--files ${spec}: files must be in the notebook's folder ${folder} or below it`);
  return rel === '' ? '**' : rel;
}

/** Every regular file under a folder ('/'-separated relative paths); links to folders are not followed. */
export async function listFolder(dir: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory()) {
      if (!SKIPPED_FOLDERS.has(entry.name))
        out.push(...(await listFolder(join(dir, entry.name), `${path}/`)));
    } else if (
      entry.isFile() ||
      (entry.isSymbolicLink() && (await stat(join(dir, entry.name)).catch(() => null))?.isFile())
    )
      out.push(path);
  }
  return out;
}

/** `tokens create|list|revoke`: straight to the deployment's table, not through its API. */
export async function tokens(
  values: Values,
  positionals: string[],
  print: (data: unknown, human: string) => void,
) {
  const [, action, tokenId] = positionals;
  if (!action || !['create', 'list', 'revoke'].includes(action))
    throw new CliError('tokens needs create, list or revoke (see notebook-jobs --help)');
  if (!values.tenant) throw new CliError(`tokens ${action} needs --tenant TENANT`);
  const table = values.table ?? process.env.NOTEBOOK_JOBS_TABLE;
  if (!table) throw new CliError("name the deployment's table with --table NAME or NOTEBOOK_JOBS_TABLE");
  // Loaded here so the other commands never load the AWS SDK.
  const { AppError, InvalidRequestError } = await import('../lambda/core/errors.ts');
  const { createDocumentClient } = await import('../lambda/adapters/dynamodb/client.ts');
  const { DynamoDbTokenStore, parseScopes } = await import('../lambda/adapters/dynamodb/token-store.ts');
  const { DynamoDbTenantSettings } = await import('../lambda/adapters/dynamodb/tenant-settings.ts');
  const { checkNotebookRoleArn, notebookRoleExternalId } = await import('../lambda/core/notebook-role.ts');
  const client = createDocumentClient({
    endpoint: process.env.NOTEBOOK_JOBS_DYNAMODB_ENDPOINT || undefined,
    region: process.env.AWS_REGION || undefined,
  });
  const store = new DynamoDbTokenStore({ client, tableName: table });
  const describeToken = (t: { token_id: string; scopes: string[]; expires_at: string | null }) =>
    `${t.token_id}  scopes ${t.scopes.join(',')}  expires ${t.expires_at ?? 'never'}`;
  try {
    if (values['notebook-role'] !== undefined && action !== 'create')
      throw new CliError('--notebook-role goes with tokens create');
    if (action === 'create') {
      // Checked before anything is written: a bad ARN creates neither a token nor a setting.
      const role =
        values['notebook-role'] === undefined ? undefined : checkNotebookRoleArn(values['notebook-role']);
      if (role !== undefined)
        await new DynamoDbTenantSettings({ client, tableName: table }).setNotebookRole(values.tenant, role);
      const notebookRole =
        role === undefined
          ? {}
          : { notebook_role: { arn: role, external_id: notebookRoleExternalId(values.tenant) } };
      const created = await store.create({
        tenant: values.tenant,
        scopes: values.scopes === undefined ? undefined : parseScopes(values.scopes),
        expiresInDays: intOption(values, 'expires-in-days'),
        description: values.description,
      });
      print(
        { ...created, ...notebookRole },
        [
          created.token,
          `id ${describeToken(created)}  tenant ${created.tenant}`,
          'This is the only time the token is shown: store it now (e.g. export NOTEBOOK_JOBS_TOKEN=...).',
          ...(notebookRole.notebook_role
            ? [
                `notebook role ${notebookRole.notebook_role.arn}: its trust policy must allow the stack's RunnerRoleArn output with sts:ExternalId ${notebookRole.notebook_role.external_id} (docs/deploy.md)`,
              ]
            : []),
        ].join('\n'),
      );
    } else if (action === 'list') {
      const list = await store.list(values.tenant);
      const now = Date.now();
      const state = (t: (typeof list)[number]) =>
        t.revoked_at
          ? `revoked ${t.revoked_at}`
          : t.expires_at && Date.parse(t.expires_at) <= now
            ? 'expired'
            : 'active';
      const rows = list.map(
        (t) =>
          `${describeToken(t)}  ${state(t)}  created ${t.created_at}${t.description ? `  ${t.description}` : ''}`,
      );
      print({ tokens: list }, rows.join('\n') || `no tokens for tenant ${values.tenant}`);
    } else {
      if (!tokenId) throw new CliError('tokens revoke needs the token id: tokens revoke --tenant T tok_...');
      const revoked = await store.revoke(values.tenant, tokenId);
      print(revoked, `revoked ${revoked.token_id} (tenant ${revoked.tenant}) at ${revoked.revoked_at}`);
    }
    return 0;
  } catch (error) {
    if (error instanceof CliError) throw error;
    if (error instanceof InvalidRequestError) throw new CliError(error.message, 2);
    if (error instanceof AppError) throw new CliError(error.message, 1);
    throw new CliError(`cannot use table ${table}: ${(error as Error).message}`, 1);
  }
}
