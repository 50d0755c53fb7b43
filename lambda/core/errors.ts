/**
 * Typed errors that carry their meaning. One mapper per protocol (HTTP, MCP) turns them
 * into responses; anything else is an internal error and is never echoed to the caller.
 */
import type { ERROR_CODES } from './contract.ts';
import type { JobRecord } from './job.ts';

/** The error codes of the contract (lambda/core/contract.ts), one HTTP status each. */
export type ErrorCode = (typeof ERROR_CODES)[number];

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class InvalidRequestError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('invalid_request', message, details);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('not_found', message, details);
  }
}

export class ConflictError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('conflict', message, details);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('payload_too_large', message, details);
  }
}

/** A body in a media type the route does not take (415). */
export class UnsupportedMediaTypeError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('unsupported_media_type', message, details);
  }
}

/** Refuses an object over a size limit before it is read (what it is, how big, the limit). */
export function checkSize(uri: string, size: number, limit: number): void {
  if (size > limit) {
    throw new PayloadTooLargeError(`${uri} is ${size} bytes; the limit is ${limit} bytes`, {
      uri,
      size,
      limit,
    });
  }
}

/** A conditional state write lost: the job is not in the expected state. */
export class StateConflictError extends ConflictError {
  constructor(readonly current: JobRecord) {
    super(`job ${current.job_id} is ${current.status}`, { job_id: current.job_id, status: current.status });
  }
}

/**
 * A launch the platform could not take now (AWS: no Fargate capacity, the account's vCPU quota,
 * throttling): worth retrying later. Never reaches a caller: the job waits queued for its retry.
 */
export class LaunchUnavailableError extends Error {
  /**
   * @param nothingStarted true when the platform answered that it started nothing (ECS: RunTask
   *   `failures`); false when the answer was an error that may hide a started runner (a thrown
   *   throttle or 5xx), so the retry must reuse the launch's idempotency token.
   */
  constructor(
    message: string,
    readonly nothingStarted: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LaunchUnavailableError';
  }
}

/**
 * The stack of anything thrown (else its message), followed by its chain of causes: for logs only,
 * never for callers.
 */
export function errorDetail(error: unknown, depth = 0): string {
  const own = error instanceof Error ? (error.stack ?? error.message) : String(error);
  const cause = error instanceof Error ? error.cause : undefined;
  // A few levels say why; a cycle or a deep chain must not make the line endless.
  return cause === undefined || depth >= 4 ? own : `${own}\ncaused by: ${errorDetail(cause, depth + 1)}`;
}

/** The message of anything thrown, for logs and error fields. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
