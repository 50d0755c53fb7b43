/**
 * A tenant's notebook role: an IAM role in the tenant's own account that the runner assumes for the
 * tenant's notebooks, so a notebook reaches the tenant's data with the tenant's permissions and never
 * with the service's. The ARN is operator input (`notebook-jobs tokens create --notebook-role`) and
 * ends up in a session policy and an STS request, so it is checked strictly here, once.
 */
import { InvalidRequestError } from './errors.ts';

/**
 * `arn:<partition>:iam::<12-digit account>:role/<optional path/><name>`. Role names are 1-64 of
 * `A-Z a-z 0-9 + = , . @ _ -` (IAM's own rule); the path, when there is one, is segments of the same
 * characters, at most 128 characters here (IAM allows 512; a shorter bound keeps every session
 * policy well inside STS's 2,048-character limit). No `*` or `?`: in a policy's Resource they
 * would be wildcards and widen what the runner may assume.
 */
const NOTEBOOK_ROLE_ARN =
  /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role\/((?:[A-Za-z0-9+=,.@_-]+\/){0,32})([A-Za-z0-9+=,.@_-]{1,64})$/;
const MAX_PATH = 128;

/** The checked ARN, or an InvalidRequestError that says what a notebook role ARN must look like. */
export function checkNotebookRoleArn(value: unknown): string {
  const text = typeof value === 'string' ? value : '';
  const match = NOTEBOOK_ROLE_ARN.exec(text);
  if (!match || (match[3] ?? '').length > MAX_PATH) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 200)) : typeof value;
    throw new InvalidRequestError(
      `notebook role must be an IAM role ARN like arn:aws:iam::123456789012:role/notebooks (role name of A-Z a-z 0-9 +=,.@_-, optional path up to ${MAX_PATH} characters), got ${shown}`,
    );
  }
  return text;
}

/**
 * The external id the runner presents when it assumes a tenant's notebook role: `notebook-jobs:`
 * followed by the tenant name. Deterministic, so an operator can tell a tenant what to put in its
 * role's trust policy before any job runs; tied to the tenant, so a role configured for another
 * tenant (by mistake or by a tenant naming someone else's ARN) refuses the runner: the confused
 * deputy case external ids exist for. Tenant names (TENANT_PATTERN) use only characters STS allows
 * in an external id.
 */
export function notebookRoleExternalId(tenant: string): string {
  return `notebook-jobs:${tenant}`;
}
