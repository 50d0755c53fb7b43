/**
 * The one mapper from typed errors to HTTP responses. Anything that is not an AppError is an
 * internal error: logged here, answered with a generic message, never echoed.
 */
import { AppError, type ErrorCode } from '../core/errors.ts';
import { textLog, type LogFn } from '../core/logging.ts';
import type { ApiResponse } from './types.ts';

const STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  internal: 500,
};

/** The HTTP status of an error code (for transports that answer in their own format, like /mcp). */
export function httpStatus(code: ErrorCode): number {
  return STATUS[code];
}

export function errorResponse(error: unknown, log: LogFn = textLog()): ApiResponse {
  if (error instanceof AppError) {
    return json(STATUS[error.code], {
      error: {
        code: error.code,
        message: error.message,
        ...(error.details ? { details: error.details } : {}),
      },
    });
  }
  log('internal error', { error });
  return json(500, {
    error: { code: 'internal', message: 'internal error; the server log has the details' },
  });
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): ApiResponse {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
    body: JSON.stringify(body),
  };
}
