/**
 * The local server's HTTP plumbing (split from local-server.ts): reading a bounded body, writing an
 * answer or a stream, the last-resort and malformed-request answers, and closing the server.
 */
import {
  STATUS_CODES,
  validateHeaderName,
  validateHeaderValue,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { AppError, errorDetail, InvalidRequestError, PayloadTooLargeError } from '../core/errors.ts';
import { errorResponse, httpStatus, json } from '../http/errors.ts';
import type { LogFn } from '../core/logging.ts';
import type { ApiResponse } from '../http/types.ts';
import { mcpTooLarge, rpcError, type McpEndpoint } from '../mcp/http.ts';
import { AuthError } from '../auth/protected-resource.ts';
import { clip } from '../core/names.ts';

/** The request target as a URL on a fixed base: only origin-form ("/path?query") is taken. */
export function requestUrl(target: string): URL {
  if (!target.startsWith('/'))
    throw new InvalidRequestError(`the request target "${clip(target)}" must be a path starting with /`);
  try {
    return new URL(`http://localhost${target}`);
  } catch {
    throw new InvalidRequestError(`the request target "${clip(target)}" is not a valid path`);
  }
}

/**
 * An MCP answer that is an SSE stream (progress, then the result): written as it comes. A client
 * that goes away cancels the stream, which ends the call's wait (the job goes on).
 */
export async function sendStream(res: ServerResponse, response: Response, log: (message: string) => void) {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  res.writeHead(response.status, headers);
  res.flushHeaders();
  try {
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>), res);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE') {
      log(`streaming an MCP response failed: ${errorDetail(error)}`);
    }
  }
}

export function restFailure(error: unknown, log: LogFn): ApiResponse {
  const response = errorResponse(error, log);
  if (error instanceof AuthError) response.headers['www-authenticate'] = error.challenge;
  return response;
}

export async function mcpFailure(endpoint: McpEndpoint, error: unknown): Promise<ApiResponse> {
  if (error instanceof PayloadTooLargeError) return fromWebResponse(mcpTooLarge(endpoint.maxBodyBytes));
  if (error instanceof AppError) {
    const unauthorized = error.code === 'unauthorized';
    return fromWebResponse(
      rpcError(
        httpStatus(error.code),
        unauthorized ? -32001 : -32000,
        error.message,
        error instanceof AuthError ? { 'www-authenticate': error.challenge } : {},
      ),
    );
  }
  endpoint.log('mcp request failed', { error });
  return internalError(true);
}

export async function fromWebResponse(response: Response): Promise<ApiResponse> {
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  return { status: response.status, headers, body: Buffer.from(await response.arrayBuffer()) };
}

/** The last-resort answer, in the protocol of the route: it says nothing about what went wrong. */
export function internalError(mcp: boolean): ApiResponse {
  const message = 'internal error; the server log has the details';
  return mcp
    ? json(500, { jsonrpc: '2.0', error: { code: -32603, message }, id: null })
    : json(500, { error: { code: 'internal', message } });
}

/**
 * Writes the response. Headers are validated first, so a value that cannot be sent becomes a
 * logged 500 instead of an exception escaping into the process.
 */
export function send(
  res: ServerResponse,
  response: ApiResponse,
  mcp: boolean,
  log: (message: string) => void,
): void {
  try {
    for (const [name, value] of Object.entries(response.headers)) {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    }
    res.writeHead(response.status, response.headers);
    res.end(response.body);
  } catch (error) {
    log(`writing a ${response.status} response failed: ${errorDetail(error)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    try {
      const fallback = internalError(mcp);
      res.writeHead(fallback.status, fallback.headers);
      res.end(fallback.body);
    } catch {
      res.destroy();
    }
  }
}

/** Malformed HTTP (request line, headers too large): a short JSON 4xx and a closed connection. */
export function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status =
    error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const body = JSON.stringify({
    error: { code: 'invalid_request', message: `malformed HTTP request (${error.code ?? 'unparsable'})` },
  });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((done, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        fail(
          new PayloadTooLargeError(
            `request body is over ${limit} bytes; send larger notebooks with POST /v1/uploads`,
          ),
        );
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => done(chunks.length ? Buffer.concat(chunks) : null));
    req.on('error', fail);
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((done) => {
    server.close(() => done());
    server.closeAllConnections();
  });
}
