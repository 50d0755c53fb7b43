/**
 * The DynamoDB table holding jobs, idempotency keys, concurrency slots and tokens. Its keys, indexes
 * and TTL attribute come from lambda/adapters/dynamodb/table.ts, the same definitions the store
 * writes with and local mode creates its table from, so the deployed table cannot drift from them.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import { AttributeType, BillingMode, ProjectionType, Table } from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import { ALL_INDEXES, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE } from '../lambda/adapters/dynamodb/table.ts';

export interface JobTableProps {
  readonly removalPolicy: RemovalPolicy;
}

/** The job table: on demand, point-in-time recovery, TTL on `expires_at`, every index the store queries. */
export class JobTable extends Construct {
  readonly table: Table;

  constructor(scope: Construct, id: string, props: JobTableProps) {
    super(scope, id);
    const retained = props.removalPolicy === RemovalPolicy.RETAIN;
    this.table = new Table(this, 'Table', {
      partitionKey: { name: PARTITION_KEY, type: AttributeType.STRING },
      sortKey: { name: SORT_KEY, type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TTL_ATTRIBUTE,
      removalPolicy: props.removalPolicy,
      // A retained table should also survive a console slip; a dev stack must be deletable.
      deletionProtection: retained,
    });
    for (const index of ALL_INDEXES) {
      this.table.addGlobalSecondaryIndex({
        indexName: index.name,
        partitionKey: { name: index.partitionKey, type: AttributeType.STRING },
        sortKey: index.sortKey ? { name: index.sortKey, type: AttributeType.STRING } : undefined,
        projectionType: index.projection === 'ALL' ? ProjectionType.ALL : ProjectionType.KEYS_ONLY,
      });
    }
  }
}
