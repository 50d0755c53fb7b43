/**
 * MCP Lambda (API Gateway REST API, Lambda proxy integration on /mcp). Translates only: proxy event
 * -> web Request -> the same handleMcpRequest as the local server -> web Response -> proxy result.
 * The authorizer has already checked the bearer token; its tenant becomes the caller.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { optionalEnv, withRenamed } from '../core/config.ts';
import { ALLOWED_ORIGINS, MAX_REQUEST_BODY_BYTES } from '../core/settings.ts';
import { errorDetail } from '../core/errors.ts';
import { handleMcpRequest, rpcError, type McpEndpoint } from '../mcp/http.ts';
import { readAwsConfig } from '../aws/config.ts';
import { createAwsService, logger, logInvocation, once } from '../aws/wiring.ts';
import { authOf, fromWebResponse, toWebRequest } from '../http/apigw.ts';

/** A Lambda response is at most 6 MB; a notebook's JSON is escaped once more inside JSON-RPC. */
const MAX_RESOURCE_BYTES = 4 * 1024 * 1024;

const logError = (message: string) => logger.error(message);
const logWarning = (message: string) => logger.warn(message);

const endpoint = once(async (): Promise<McpEndpoint> => {
  const env = withRenamed(process.env, ALLOWED_ORIGINS.variable, ALLOWED_ORIGINS.oldVariable, logWarning);
  const config = readAwsConfig(env, logWarning);
  const { service } = await createAwsService(config);
  return {
    service,
    allowedOrigins: (optionalEnv(env, ALLOWED_ORIGINS.variable) ?? '')
      .split(',')
      .map((origin) => origin.trim())
      .filter(Boolean),
    maxBodyBytes: MAX_REQUEST_BODY_BYTES,
    pollIntervalSeconds: 10,
    taskTtlMs: config.retentionDays * 24 * 3600 * 1000,
    maxResourceBytes: MAX_RESOURCE_BYTES,
    // The proxy integration buffers the whole response: a progress stream would arrive at once, at
    // the end. API Gateway can stream (responseTransferMode STREAM); not wired yet, see docs/mcp.md.
    streamProgress: false,
    log: logError,
  };
});

/** The Lambda entry point. */
export async function handler(
  event: APIGatewayProxyEvent,
  lambdaContext?: Context,
): Promise<APIGatewayProxyResult> {
  try {
    const auth = authOf(event);
    logInvocation(lambdaContext, { tenant: auth?.tenant });
    // MCP mixes reading and submitting in one endpoint: it needs a token with both scopes.
    if (auth && !(auth.scopes.includes('read') && auth.scopes.includes('write'))) {
      return fromWebResponse(
        rpcError(403, -32000, 'the MCP endpoint needs a token with the read and write scopes'),
      );
    }
    const caller = auth ? { tenant: auth.tenant } : null;
    return await fromWebResponse(await handleMcpRequest(await endpoint(), toWebRequest(event), caller));
  } catch (error) {
    // Configuration and wiring failures: logged in full, answered without internals.
    logError(`mcp handler failed: ${errorDetail(error)}`);
    return fromWebResponse(rpcError(500, -32603, 'internal error; the function log has the details'));
  }
}
