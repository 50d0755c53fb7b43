/**
 * The DynamoDB document client, created once per process. Locally it points at the embedded
 * dynalite endpoint with placeholder credentials (dynalite does not check them).
 */
import { Agent } from 'node:http';
import { connect } from 'node:net';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/** An endpoint of this form is a Unix socket (the local server's dynalite): `unix:/path/to/socket`. */
export const UNIX_ENDPOINT_PREFIX = 'unix:';

/** Every connection goes to one Unix socket, whatever host the request names. */
class UnixSocketAgent extends Agent {
  constructor(private readonly socketPath: string) {
    super({ keepAlive: true });
  }

  override createConnection(): ReturnType<typeof connect> {
    return connect(this.socketPath);
  }
}

export function createDocumentClient(
  options: {
    endpoint?: string;
    region?: string;
    /** Credentials instead of the default chain (or of the placeholders a custom endpoint gets). */
    credentials?: DynamoDBClientConfig['credentials'];
  } = {},
): DynamoDBDocumentClient {
  const { endpoint } = options;
  const socketPath = endpoint?.startsWith(UNIX_ENDPOINT_PREFIX)
    ? endpoint.slice(UNIX_ENDPOINT_PREFIX.length)
    : undefined;
  const client = new DynamoDBClient(
    endpoint
      ? {
          // Over a socket the host only fills the Host header and the signature.
          endpoint: socketPath ? 'http://localhost' : endpoint,
          ...(socketPath ? { requestHandler: { httpAgent: new UnixSocketAgent(socketPath) } } : {}),
          region: options.region ?? 'local',
          credentials: options.credentials ?? { accessKeyId: 'local', secretAccessKey: 'local' },
          maxAttempts: 5,
        }
      : { region: options.region, credentials: options.credentials },
  );
  return DynamoDBDocumentClient.from(client, {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}
