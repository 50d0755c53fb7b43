/**
 * What the Lambda bundles put in place of `@modelcontextprotocol/server/_shims` (the esbuild alias
 * in lambda/bundle/esbuild-config.ts, lambdaAliases). SDK v2 picks that module by export condition:
 * on Node its default JSON Schema validator is Ajv, which the SDK inlines whole (about 150 KiB
 * minified, a third Ajv beside SDK v1's), elsewhere (browsers, workerd) the `@cfworker/json-schema`
 * one. The SDK only validates with it what a client answers to an elicitation, which this server
 * never sends, and modern.ts passes the cfworker validator explicitly, so the tests run what the
 * Lambda runs. The exports are the Node shim's names (test/unit/sdk-shims.test.ts holds them).
 */
export { CfWorkerJsonSchemaValidator as DefaultJsonSchemaValidator } from '@modelcontextprotocol/server/validators/cf-worker';
export { default as process } from 'node:process';
