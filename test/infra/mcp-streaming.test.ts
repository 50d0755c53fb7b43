/**
 * The /mcp method streams: its Lambda proxy integration has `ResponseTransferMode: STREAM` and
 * calls the function's response-streaming-invocations path (InvokeWithResponseStream), which API
 * Gateway may do because the function's resource policy lets it lambda:InvokeFunction (the action
 * InvokeWithResponseStream requires) from this method only. The REST routes stay buffered.
 * Built with cdk.json's feature flags, bundling skipped.
 */
import { readFileSync } from 'node:fs';
import { App, Stack, type CfnElement } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { NotebookJobsStack } from '../../lib/notebook-jobs-stack.ts';
import { readStackConfig } from '../../lib/stack-config.ts';

const CDK_JSON = JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as {
  context: Record<string, unknown>;
};

const app = new App({ context: { ...CDK_JSON.context, 'aws:cdk:bundling-stacks': [] } });
const stack = new NotebookJobsStack(app, 'Test', { config: readStackConfig(app.node) });
const template = Template.fromStack(stack);

const logicalId = (construct: IConstruct) =>
  Stack.of(construct).getLogicalId((construct.node.defaultChild ?? construct) as CfnElement);

/** Each API method's properties by "METHOD pathPart". */
function methodsByRoute() {
  const resources = template.findResources('AWS::ApiGateway::Resource');
  return Object.fromEntries(
    Object.values(template.findResources('AWS::ApiGateway::Method')).map((method) => [
      `${method.Properties.HttpMethod} ${resources[method.Properties.ResourceId.Ref]?.Properties.PathPart}`,
      method.Properties,
    ]),
  );
}

describe('/mcp response streaming', () => {
  it('integrates the mcp Lambda with STREAM through response-streaming-invocations', () => {
    const mcp = methodsByRoute()['ANY mcp'];
    expect(mcp?.Integration).toMatchObject({
      Type: 'AWS_PROXY',
      IntegrationHttpMethod: 'POST',
      ResponseTransferMode: 'STREAM',
    });
    const uri = JSON.stringify(mcp?.Integration.Uri);
    expect(uri).toContain(logicalId(stack.functions.mcp.function));
    expect(uri).toContain('lambda:path/2021-11-15/functions/');
    expect(uri).toContain('/response-streaming-invocations');
    expect(uri).not.toContain('2015-03-31');
  });

  it('keeps the REST routes buffered (their handler returns one proxy result)', () => {
    const routes = methodsByRoute();
    for (const route of ['ANY {proxy+}', 'GET health', 'GET openapi.json']) {
      expect(routes[route]?.Integration.ResponseTransferMode, route).toBeUndefined();
      expect(JSON.stringify(routes[route]?.Integration.Uri), route).toContain('2015-03-31');
    }
  });

  it('lets API Gateway invoke the mcp Lambda (lambda:InvokeFunction, which InvokeWithResponseStream needs) from /mcp only', () => {
    const mcpFunction = logicalId(stack.functions.mcp.function);
    const permissions = Object.values(template.findResources('AWS::Lambda::Permission')).filter((p) =>
      JSON.stringify(p.Properties.FunctionName).includes(mcpFunction),
    );
    expect(permissions).toHaveLength(1);
    expect(permissions[0]?.Properties).toMatchObject({
      Action: 'lambda:InvokeFunction',
      Principal: 'apigateway.amazonaws.com',
    });
    // execute-api ARN of this API's stage, method ANY (*), path /mcp.
    expect(JSON.stringify(permissions[0]?.Properties.SourceArn)).toMatch(/\/\*\/mcp"/);
  });
});
