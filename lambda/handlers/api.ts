/**
 * REST API Lambda (API Gateway REST API, Lambda proxy integration). Translates only: the caller's
 * tenant and scopes from the authorizer, a scope check, then the same routes as local mode.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
import { AppError, PayloadTooLargeError } from '../core/errors.ts';
import type { LogFn } from '../core/logging.ts';
import { MAX_REQUEST_BODY_BYTES } from '../core/settings.ts';
import { errorResponse } from '../http/errors.ts';
// PUBLIC_ROUTES (the route table's `public` routes) are also the ones the stack leaves open.
import { handleApiRequest, PUBLIC_ROUTES, type ApiContext } from '../http/routes.ts';
import { readAwsConfig } from '../aws/config.ts';
import { createAwsService, logger, logInvocation, once } from '../aws/wiring.ts';
import { authOf, forbidden, requiredScope, routePath, toApiRequest, toProxyResult } from '../http/apigw.ts';

const logError: LogFn = (message, fields) => logger.error(message, fields ?? {});

// Wired once per cold start, at the first event (so a configuration error is reported per request
// with the variable's name in the log, and a failed start is retried).
const context = once(async (): Promise<ApiContext> => {
  const { service, health } = await createAwsService(readAwsConfig(process.env));
  return { service, health, log: logError };
});

/** The Lambda entry point. */
export async function handler(
  event: APIGatewayProxyEvent,
  lambdaContext?: Context,
): Promise<APIGatewayProxyResult> {
  try {
    const method = event.httpMethod;
    const path = routePath(event);
    const auth = authOf(event);
    logInvocation(lambdaContext, { tenant: auth?.tenant });
    if (!auth && !PUBLIC_ROUTES.has(`${method} ${path}`)) {
      // Only reachable when a route is deployed without the authorizer: refuse rather than guess.
      return toProxyResult(
        errorResponse(new AppError('unauthorized', 'send Authorization: Bearer <token>'), logError),
      );
    }
    if (auth) {
      const scope = requiredScope(method);
      if (!auth.scopes.includes(scope)) return toProxyResult(forbidden(scope, method, path));
    }
    const request = toApiRequest(event, auth?.tenant ?? '');
    if (request.body && request.body.length > MAX_REQUEST_BODY_BYTES) {
      // The same limit (and answer) as the local server: a body that fits Lambda's payload limit
      // however it is escaped, so no notebook accepted here depends on how it escapes.
      const message = `request body is over ${MAX_REQUEST_BODY_BYTES} bytes; send larger notebooks with POST /v1/uploads and submit the notebook_uri`;
      return toProxyResult(
        errorResponse(
          new PayloadTooLargeError(message, { size: request.body.length, limit: MAX_REQUEST_BODY_BYTES }),
          logError,
        ),
      );
    }
    const response = await handleApiRequest(await context(), request);
    return toProxyResult(response);
  } catch (error) {
    // Configuration and wiring failures: logged in full, answered as a generic 500.
    return toProxyResult(errorResponse(error, logError));
  }
}
