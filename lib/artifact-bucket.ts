/**
 * The S3 bucket for notebooks: `inputs/<job>/` (submitted notebooks), `outputs/<job>/` (executed
 * notebooks) and `uploads/` (presigned browser or CLI uploads not yet submitted). Private, TLS only,
 * encrypted, and emptied by lifecycle rules on the same schedule as the job records' DynamoDB TTL.
 * Its server access logs go to a second bucket: presigned URLs bypass the API, so S3's own log is
 * the only record of who downloaded an executed notebook.
 */
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { BlockPublicAccess, Bucket, BucketEncryption, ObjectOwnership } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

/** The key prefixes the service uses. */
export const ARTIFACT_PREFIXES = { inputs: 'inputs/', outputs: 'outputs/', uploads: 'uploads/' } as const;

/** How long access logs are kept. */
export const ACCESS_LOG_DAYS = 90;

export interface ArtifactBucketProps {
  readonly retentionDays: number;
  readonly removalPolicy: RemovalPolicy;
}

/** The artifact bucket and its access-log bucket. */
export class ArtifactBucket extends Construct {
  readonly bucket: Bucket;
  readonly accessLogs: Bucket;

  constructor(scope: Construct, id: string, props: ArtifactBucketProps) {
    super(scope, id);
    const destroy = props.removalPolicy === RemovalPolicy.DESTROY;
    const common = {
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      // SSE-S3: access-log delivery only supports it, and KMS would add a key policy and per-request
      // KMS cost to every notebook read for no reader the bucket policy does not already exclude.
      encryption: BucketEncryption.S3_MANAGED,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: props.removalPolicy,
      // A dev stack (removalPolicy destroy) must be deletable even with notebooks in it.
      autoDeleteObjects: destroy,
    };
    this.accessLogs = new Bucket(this, 'AccessLogs', {
      ...common,
      lifecycleRules: [{ id: 'expire-access-logs', expiration: Duration.days(ACCESS_LOG_DAYS) }],
    });
    this.bucket = new Bucket(this, 'Bucket', {
      ...common,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'artifacts/',
      lifecycleRules: [
        // An upload URL lives minutes; an upload never submitted is garbage after a day.
        { id: 'expire-uploads', prefix: ARTIFACT_PREFIXES.uploads, expiration: Duration.days(1) },
        {
          id: 'expire-inputs',
          prefix: ARTIFACT_PREFIXES.inputs,
          expiration: Duration.days(props.retentionDays),
        },
        {
          id: 'expire-outputs',
          prefix: ARTIFACT_PREFIXES.outputs,
          expiration: Duration.days(props.retentionDays),
        },
        { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });
  }
}
