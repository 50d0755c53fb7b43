/**
 * MCP Lambda (API Gateway REST API, Lambda proxy integration on /mcp with response streaming:
 * `responseTransferMode: STREAM`, invoked with InvokeWithResponseStream). Translates only: proxy
 * event -> web Request -> the same handleMcpRequest as the local server -> web Response, written to
 * the Lambda response stream as it is produced (the HTTP prelude with status and headers, then the
 * body). So a synchronous execute_notebook with a progressToken, from a client that accepts
 * text/event-stream, reaches the client as an SSE stream of progress notifications, as locally;
 * every other answer is one JSON body. The authorizer has already checked the bearer token; its
 * tenant becomes the caller.
 */
import type { Writable } from 'node:stream';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { optionalEnv, withRenamed } from '../core/config.ts';
import { ALLOWED_ORIGINS, MAX_REQUEST_BODY_BYTES } from '../core/settings.ts';

import { handleMcpRequest, rpcError, type McpEndpoint } from '../mcp/http.ts';
import { readAwsConfig } from '../aws/config.ts';
import { createAwsService, logger, logInvocation, once } from '../aws/wiring.ts';
import { authOf, toWebRequest } from '../http/apigw.ts';
import type { LogFn } from '../core/logging.ts';

/** An executed notebook or output file served inline as a resource: at most this many bytes. */
const MAX_RESOURCE_BYTES = 4 * 1024 * 1024;

/** What the Lambda Node.js runtime provides for response streaming (the global `awslambda`). */
export interface LambdaStreamingRuntime {
  streamifyResponse(
    handler: (event: APIGatewayProxyEvent, responseStream: Writable, context?: Context) => Promise<void>,
  ): unknown;
  HttpResponseStream: {
    /** Writes the HTTP prelude (status, headers, cookies) and the delimiter; returns the body stream. */
    from(
      responseStream: Writable,
      prelude: { statusCode: number; headers: Record<string, string>; cookies?: string[] },
    ): Writable;
  };
}

/**
 * The runtime's streaming globals; absent outside Lambda (the handler then refuses every event).
 * Outside Lambda `awslambda` may still exist, holding only what a library put there (Powertools'
 * InvokeStore), so the function itself is checked.
 */
const candidate = (globalThis as { awslambda?: Partial<LambdaStreamingRuntime> }).awslambda;
const runtime =
  typeof candidate?.streamifyResponse === 'function' ? (candidate as LambdaStreamingRuntime) : undefined;

const logError: LogFn = (message, fields) => logger.error(message, fields ?? {});
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
    // The integration streams (see the module comment): progress reaches the client as it happens.
    streamProgress: true,
    log: logError,
  };
});

/** The answer to one proxy event, as a web Response (its body may still be being produced). */
async function respond(event: APIGatewayProxyEvent, lambdaContext?: Context): Promise<Response> {
  try {
    const auth = authOf(event);
    logInvocation(lambdaContext, { tenant: auth?.tenant });
    // MCP mixes reading and submitting in one endpoint: it needs a token with both scopes.
    if (auth && !(auth.scopes.includes('read') && auth.scopes.includes('write'))) {
      return rpcError(403, -32000, 'the MCP endpoint needs a token with the read and write scopes');
    }
    const caller = auth ? { tenant: auth.tenant } : null;
    return await handleMcpRequest(await endpoint(), toWebRequest(event), caller);
  } catch (error) {
    // Configuration and wiring failures: logged in full, answered without internals.
    logError('mcp handler failed', { error });
    return rpcError(500, -32603, 'internal error; the function log has the details');
  }
}

/**
 * Writes `response` to the Lambda response stream: the prelude, then each body chunk as it comes.
 * When the client goes away first (the stream closes before the end), the body is cancelled, which
 * stops a streamed call's wait (the job goes on).
 */
async function send(
  streaming: LambdaStreamingRuntime,
  response: Response,
  responseStream: Writable,
): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  const out = streaming.HttpResponseStream.from(responseStream, {
    statusCode: response.status,
    headers,
    ...(cookies.length > 0 && { cookies }),
  });
  const reader = response.body?.getReader();
  let ended = false;
  const gone = () => {
    if (!ended) void reader?.cancel('the client closed the stream').catch(() => undefined);
  };
  out.once('close', gone);
  out.on('error', gone);
  try {
    for (;;) {
      const chunk = await reader?.read();
      if (!chunk || chunk.done) break;
      if (!out.write(chunk.value)) {
        await new Promise((resolve) => {
          out.once('drain', resolve);
          out.once('close', resolve);
        });
      }
    }
  } catch (error) {
    logError('mcp: writing the response stream failed', { error });
  } finally {
    ended = true;
    out.end();
  }
}

/**
 * The Lambda entry point: a streaming handler (API Gateway invokes it with response streaming).
 * Loading the module outside the Lambda runtime works (bundle checks import it); invoking it there
 * fails with what is missing.
 */
export const handler = runtime
  ? runtime.streamifyResponse(async (event, responseStream, lambdaContext) => {
      await send(runtime, await respond(event, lambdaContext), responseStream);
    })
  : () => {
      throw new Error(
        'the mcp handler streams its responses (awslambda.streamifyResponse): run it in the AWS Lambda Node.js runtime',
      );
    };
