/**
 * Logging with correlation (issue 10): an internal error while answering a request about a job (REST
 * or an MCP tool call) is logged with the job's id, the caller's tenant, the route or tool, and the
 * error's cause; the client gets a generic error that names none of it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestLogFields } from '../../lambda/http/routes.ts';
import { startTestService, type TestService } from '../helpers/local-service.ts';

const lines: string[] = [];
let svc: TestService;

beforeAll(async () => {
  svc = await startTestService({ log: (line: string) => lines.push(line) });
  // Fault injection: the service fails below the routes, as a store outage would.
  svc.server.service.get = async () => {
    throw new Error('reading the job failed', { cause: new Error('store unreachable: ECONNRESET') });
  };
});
afterAll(() => svc?.close());

describe('request logging', () => {
  it('logs an internal error with the job id, tenant, method, path and cause; answers a generic 500', async () => {
    const id = `job_${'01KBX0'.padEnd(30, '0')}`;
    const response = await svc.request('GET', `/v1/jobs/${id}`);
    expect(response.status).toBe(500);
    expect(JSON.stringify(response.body)).not.toMatch(/store unreachable|ECONNRESET/);
    const line = lines.find((l) => l.startsWith('internal error'));
    expect(line).toBeDefined();
    expect(line).toContain(`job_id="${id}"`);
    expect(line).toContain('tenant="local"');
    expect(line).toContain('method="GET"');
    expect(line).toContain(`path="/v1/jobs/${id}"`);
    expect(line).toMatch(/store unreachable: ECONNRESET/);
  });

  it('keeps hostile path text to one JSON-quoted, bounded field', async () => {
    lines.length = 0;
    const hostile = `job_x%0Aforged%20line${'a'.repeat(5000)}`;
    const response = await svc.request('GET', `/v1/jobs/${hostile}`);
    expect(response.status).toBe(500);
    const line = lines.find((l) => l.startsWith('internal error')) ?? '';
    const head = line.split('\n')[0] ?? '';
    expect(head.length).toBeLessThan(700);
    // The path is logged as it came (still percent-encoded), so no request forges a line of its own.
    expect(head).toContain('job_id="job_x%0Aforged%20line');
    expect(
      lines
        .join('\n')
        .split('\n')
        .some((l) => l.startsWith('forged')),
    ).toBe(false);
  });

  it('logs a failed MCP tool call with the tool, the job id, the tenant and the cause', async () => {
    lines.length = 0;
    const id = `job_${'01KBX1'.padEnd(30, '0')}`;
    const response = await fetch(`${svc.server.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-11-25',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: { name: 'manage_async_job', arguments: { action: 'status', job_id: id } },
      }),
    });
    const text = await response.text();
    expect(text).toContain('"isError":true');
    expect(text).not.toMatch(/store unreachable|ECONNRESET/);
    const line = lines.find((l) => l.startsWith('mcp tool failed')) ?? '';
    expect(line).toContain('tenant="local"');
    expect(line).toContain('tool="manage_async_job"');
    expect(line).toContain(`job_id="${id}"`);
    expect(line).toMatch(/store unreachable: ECONNRESET/);
  });

  it('derives the fields from the request alone', () => {
    expect(requestLogFields({ method: 'GET', path: '/v1/jobs', tenant: 't1' })).toEqual({
      method: 'GET',
      path: '/v1/jobs',
      tenant: 't1',
    });
    expect(requestLogFields({ method: 'POST', path: '/v1/jobs/job_1/cancel', tenant: '' })).toEqual({
      method: 'POST',
      path: '/v1/jobs/job_1/cancel',
      job_id: 'job_1',
    });
  });
});
