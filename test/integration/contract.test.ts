/**
 * The response contract (lambda/core/contract.ts) against a real local service: every REST answer
 * parses with its strict schema (a field the contract does not name fails), and the OpenAPI
 * document gives every JSON response a schema with properties.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { z } from 'zod';
import {
  CleanupResultSchema,
  DeleteResultSchema,
  ErrorBodySchema,
  InspectResultSchema,
  JobListSchema,
  JobViewSchema,
  JobWithLogsSchema,
  LogPageSchema,
  ResultViewSchema,
  UploadReceiptSchema,
  UploadSlotSchema,
} from '../../lambda/core/contract.ts';
import { PUBLIC_ROUTES, ROUTES } from '../../lambda/http/routes.ts';
import { rawRequest, startTestService, type TestService } from '../helpers/local-service.ts';
import { codeCell, makeNotebook } from '../helpers/notebooks.ts';

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => {
  await svc?.close();
});

/** Parses with the schema; a failure names every field that is off. */
function conforms<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new Error(`${JSON.stringify(parsed.error.issues)}\nin ${JSON.stringify(body)}`);
  return parsed.data;
}

describe('REST answers follow the contract', () => {
  it('for a job from submit to deletion, completed and failed', async () => {
    const notebook = makeNotebook([codeCell('n = 1', ['parameters']), codeCell('print(n)')]);
    const created = await svc.request('POST', '/v1/jobs', {
      notebook: { content: notebook, name: 'c.ipynb' },
      parameters: { n: 2 },
      tags: { team: 'a' },
      wait_seconds: 20,
    });
    expect(created.status).toBe(201);
    const job = conforms(JobViewSchema, created.body);
    await svc.waitFor(job.job_id, (j) => j.status === 'completed');
    conforms(JobWithLogsSchema, (await svc.request('GET', `/v1/jobs/${job.job_id}?include_logs=true`)).body);
    const logs = conforms(LogPageSchema, (await svc.request('GET', `/v1/jobs/${job.job_id}/logs`)).body);
    expect(logs.lines.some((line) => line.text.includes('2'))).toBe(true);
    const result = conforms(
      ResultViewSchema,
      (await svc.request('GET', `/v1/jobs/${job.job_id}/result`)).body,
    );
    expect(result.summary?.totals.ok).toBe(3);
    conforms(JobListSchema, (await svc.request('GET', '/v1/jobs?limit=5')).body);
    const ended = await svc.request('POST', `/v1/jobs/${job.job_id}/cancel`);
    expect(ended.status).toBe(409);
    conforms(ErrorBodySchema, ended.body);
    const sleeper = await svc.request('POST', '/v1/jobs', {
      notebook: { content: makeNotebook([codeCell('import time; time.sleep(60)')]) },
    });
    const cancelled = conforms(
      JobViewSchema,
      (await svc.request('POST', `/v1/jobs/${sleeper.body.job_id}/cancel`)).body,
    );
    expect(cancelled.status).toBe('cancelled');

    const failing = await svc.request('POST', '/v1/jobs', {
      notebook: { content: makeNotebook([codeCell('raise ValueError("no")')]) },
      wait_seconds: 20,
    });
    const failed = conforms(
      JobViewSchema,
      (await svc.waitFor(failing.body.job_id, (j) => j.status === 'failed')) as unknown,
    );
    expect(failed.error).toMatchObject({ type: 'cell_error', ename: 'ValueError' });
    const failedResult = conforms(
      ResultViewSchema,
      (await svc.request('GET', `/v1/jobs/${failed.job_id}/result`)).body,
    );
    expect(failedResult.summary?.error).toMatchObject({ ename: 'ValueError' });

    conforms(DeleteResultSchema, (await svc.request('DELETE', `/v1/jobs/${job.job_id}`)).body);
    conforms(
      CleanupResultSchema,
      (await svc.request('POST', '/v1/jobs/cleanup', { older_than_hours: 100 })).body,
    );
  }, 90_000);

  it('for inspection and uploads', async () => {
    const notebook = makeNotebook([codeCell('alpha: float = 0.5  # rate', ['parameters'])]);
    const inspected = conforms(
      InspectResultSchema,
      (await svc.request('POST', '/v1/notebooks/inspect', { notebook: { content: notebook } })).body,
    );
    expect(inspected.parameters).toEqual([
      { name: 'alpha', inferred_type: 'float', default: '0.5', help: 'rate' },
    ]);
    const slot = conforms(
      UploadSlotSchema,
      (await svc.request('POST', '/v1/uploads', { name: 'u.ipynb' })).body,
    );
    const put = await rawRequest(
      svc,
      'PUT',
      new URL(slot.upload_url).pathname,
      { 'content-type': 'application/x-ipynb+json' },
      JSON.stringify(notebook),
    );
    expect(conforms(UploadReceiptSchema, put.body).notebook_uri).toBe(slot.notebook_uri);
  });

  it('for errors of every kind', async () => {
    const answers = [
      await svc.request('POST', '/v1/jobs', { notebook: {} }),
      await svc.request('GET', '/v1/jobs/job_000000000000000000000000000000'),
      await svc.request('PATCH', '/v1/jobs'),
      await svc.request('POST', '/v1/jobs', '{}', { 'content-type': 'text/plain' }),
      await svc.request('GET', '/v1/nothing'),
    ];
    expect(answers.map((a) => a.status)).toEqual([400, 404, 405, 415, 404]);
    for (const answer of answers) conforms(ErrorBodySchema, answer.body);
  });
});

describe('the OpenAPI document', () => {
  it('gives every JSON response a schema with properties, and every component is used', async () => {
    const doc = (await svc.request('GET', '/openapi.json')).body;
    const schemas: Record<string, any> = doc.components.schemas;
    const used = new Set<string>();
    for (const [path, methods] of Object.entries<any>(doc.paths)) {
      for (const [method, operation] of Object.entries<any>(methods)) {
        for (const [status, response] of Object.entries<any>(operation.responses)) {
          let schema = response.content?.['application/json']?.schema;
          if (!schema) continue;
          if (schema.$ref) {
            const name = schema.$ref.replace('#/components/schemas/', '');
            used.add(name);
            schema = schemas[name];
          }
          expect(schema?.properties, `${method} ${path} ${status}`).toBeTypeOf('object');
        }
      }
    }
    expect([...used].sort()).toEqual(Object.keys(schemas).sort());
    expect(schemas.Job.additionalProperties).toBe(false);
  });

  it('has exactly the route table: every route with its method, no operation without a route', async () => {
    const doc = (await svc.request('GET', '/openapi.json')).body;
    const documented = Object.entries<Record<string, unknown>>(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    // A greedy `{path+}` (the rest of the path) is written `{path}` in OpenAPI.
    const templates = ROUTES.map(
      (route) => `${route.method} ${route.path.replace(/\{([^}]+)\+\}/g, '{$1}')}`,
    );
    expect(documented.sort()).toEqual(templates.sort());
    // Only the public routes say they need no token.
    const open = documented.filter((key) => {
      const [method, path] = key.split(' ') as [string, string];
      return doc.paths[path][method.toLowerCase()].security?.length === 0;
    });
    expect(open).toEqual([...PUBLIC_ROUTES]);
  });

  it('gives every response body a schema, with properties unless it is text', async () => {
    const doc = (await svc.request('GET', '/openapi.json')).body;
    for (const [path, methods] of Object.entries<any>(doc.paths)) {
      for (const [method, operation] of Object.entries<any>(methods)) {
        for (const [status, response] of Object.entries<any>(operation.responses)) {
          for (const [type, media] of Object.entries<any>(response.content ?? {})) {
            const where = `${method} ${path} ${status} ${type}`;
            const schema = media.schema?.$ref
              ? doc.components.schemas[media.schema.$ref.replace('#/components/schemas/', '')]
              : media.schema;
            // Text and files (an output file's bytes) are strings; JSON bodies are objects.
            if (type.startsWith('text/') || schema?.format === 'binary')
              expect(schema?.type, where).toBe('string');
            else expect(schema?.properties, where).toBeTypeOf('object');
          }
        }
      }
    }
  });
});
