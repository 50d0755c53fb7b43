/**
 * A tenant's configuration in the job table: one item, `TENANT#<tenant>` / `SETTINGS`, outside every
 * job index (it carries none of their key attributes). Today it holds the tenant's notebook role
 * (lambda/core/notebook-role.ts). Written by the operator's CLI; read by the runner with a session
 * limited to its own tenant's item (container/runner/job-credentials.ts).
 */
import { GetCommand, UpdateCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { InvalidRequestError } from '../../core/errors.ts';
import { checkNotebookRoleArn } from '../../core/notebook-role.ts';
import { PARTITION_KEY, SORT_KEY } from './table.ts';
import { TENANT_PATTERN } from './token-store.ts';

const SETTINGS_SORT_KEY = 'SETTINGS';

/** Partition key of a tenant's settings item (an IAM LeadingKeys value too). */
export function tenantSettingsPartition(tenant: string): string {
  return `TENANT#${tenant}`;
}

export interface TenantSettings {
  /** The role the runner assumes for the tenant's notebooks; null: notebooks get no AWS credentials. */
  notebook_role_arn: string | null;
}

export class DynamoDbTenantSettings {
  constructor(private readonly options: { client: DynamoDBDocumentClient; tableName: string }) {}

  /** The tenant's settings; a tenant nobody configured has none of them. */
  async get(tenant: string): Promise<TenantSettings> {
    checkTenant(tenant);
    const result = await this.options.client.send(
      new GetCommand({ TableName: this.options.tableName, Key: key(tenant), ConsistentRead: true }),
    );
    const arn = result.Item?.notebook_role_arn;
    // What the table holds is checked again: the runner puts it into a session policy.
    return { notebook_role_arn: typeof arn === 'string' ? checkNotebookRoleArn(arn) : null };
  }

  /** Sets (or replaces) the tenant's notebook role. */
  async setNotebookRole(tenant: string, arn: string, now = new Date()): Promise<TenantSettings> {
    checkTenant(tenant);
    const checked = checkNotebookRoleArn(arn);
    await this.options.client.send(
      new UpdateCommand({
        TableName: this.options.tableName,
        Key: key(tenant),
        UpdateExpression: 'SET notebook_role_arn = :arn, tenant = :tenant, updated_at = :now',
        ExpressionAttributeValues: { ':arn': checked, ':tenant': tenant, ':now': now.toISOString() },
      }),
    );
    return { notebook_role_arn: checked };
  }
}

function key(tenant: string): Record<string, string> {
  return { [PARTITION_KEY]: tenantSettingsPartition(tenant), [SORT_KEY]: SETTINGS_SORT_KEY };
}

function checkTenant(tenant: string): void {
  if (!TENANT_PATTERN.test(tenant))
    throw new InvalidRequestError(`not a tenant name: "${tenant.slice(0, 200)}"`);
}
