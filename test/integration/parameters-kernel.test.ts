/**
 * Property: any JSON value passed as a parameter reaches a real Python kernel as an equal value.
 * Each run is one job whose notebook prints every injected parameter back as JSON.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeCell, joined, makeNotebook } from '../helpers/notebooks.ts';
import { startTestService, type TestService } from '../helpers/local-service.ts';

let svc: TestService;
beforeAll(async () => {
  svc = await startTestService();
});
afterAll(async () => {
  await svc?.close();
});

const echo = makeNotebook([
  codeCell(
    'import json\nprint(json.dumps({k: v for k, v in globals().items() if k.startswith("p_")}, ensure_ascii=True))',
  ),
]);

const hostile = fc.constantFrom(
  `"); __import__('os').system('touch /tmp/pwned') #`,
  "'''\nimport os\n'''",
  '\\" + str(1/0) + \\"',
  '{__import__("os")}',
  '\u2028\u2029\0\ud800',
);

/** Request JSON may not hold a "__proto__" member (a 400: JavaScript would drop it); fast-check likes that key. */
const withoutProtoKey = (value: unknown) => !JSON.stringify(value).includes('"__proto__"');

describe('parameter values in a real kernel', () => {
  it('arrive equal to what was sent, whatever the JSON value', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.jsonValue().filter(withoutProtoKey), hostile), { minLength: 25, maxLength: 25 }),
        async (values) => {
          const parameters = Object.fromEntries(values.map((v, i) => [`p_${i}`, v]));
          const { status, body } = await svc.request('POST', '/v1/jobs', {
            notebook: { content: echo },
            parameters,
            allow_unknown_parameters: true,
            wait_seconds: 20,
          });
          expect(status).toBe(201);
          expect(body.status).toBe('completed');
          const output = (await svc.request('GET', `/v1/jobs/${body.job_id}/output`)).body;
          const printed = JSON.parse(joined(output.cells.at(-1).outputs[0].text));
          expect(printed).toEqual(JSON.parse(JSON.stringify(parameters)));
          for (const [name, value] of Object.entries(parameters)) {
            if (Object.is(value, -0)) expect(Object.is(printed[name], -0)).toBe(true);
          }
        },
      ),
      { numRuns: 4 },
    );
  });
});
