/**
 * The public API: one regional REST API in front of the api and mcp Lambdas (proxy integrations),
 * with a Lambda authorizer for `Authorization: Bearer <token>`, stage throttling, JSON access logs
 * and errors in the service's own `{"error": {...}}` shape for what the gateway answers itself.
 *
 * Routes: `/v1/{proxy+}` and `/openapi.json` -> api; the route table's public routes (`/v1/health`)
 * -> api without a token; `/mcp` -> mcp. API Gateway caps a request at 10 MB (a hard limit), Lambda
 * an event at 6 MB; the service reads bodies up to MAX_REQUEST_BODY_BYTES (about 2.97 MiB, what fits
 * Lambda however it is escaped) and takes larger notebooks through presigned uploads.
 */
import { Duration, Lazy, RemovalPolicy, Size, Stack } from 'aws-cdk-lib';
import {
  AccessLogField,
  AccessLogFormat,
  AuthorizationType,
  Cors,
  EndpointType,
  IdentitySource,
  LambdaIntegration,
  LogGroupLogDestination,
  MockIntegration,
  PassthroughBehavior,
  MethodLoggingLevel,
  RequestAuthorizer,
  ResponseTransferMode,
  ResponseType,
  RestApi,
  type MethodOptions,
} from 'aws-cdk-lib/aws-apigateway';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { CfnWebACLAssociation } from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import type { HouseFunction } from './house-function.ts';
import { acknowledge } from './nag-acknowledgements.ts';
import { MAX_REQUEST_BODY_BYTES } from '../lambda/core/settings.ts';
import { ROUTES } from '../lambda/http/routes.ts';
import {
  METADATA_PATH,
  metadataUrl,
  protectedResourceMetadata,
  scopeNames,
} from '../lambda/auth/protected-resource.ts';

/** The stage name: URLs look like https://<id>.execute-api.<region>.amazonaws.com/api/v1/jobs. */
export const STAGE_NAME = 'api';
/** How long an authorizer decision is reused for the same Authorization header. */
export const AUTHORIZER_CACHE_TTL = Duration.seconds(60);

export interface RestApiProps {
  readonly api: HouseFunction;
  readonly mcp: HouseFunction;
  readonly authorizer: HouseFunction;
  readonly throttleRate: number;
  readonly throttleBurst: number;
  readonly mcpAllowedOrigins: readonly string[];
  readonly webAclArn: string | undefined;
  /** X-Ray tracing of the stage (context tracing). */
  readonly tracing: boolean;
  readonly logRetention: RetentionDays;
  readonly logRemovalPolicy: RemovalPolicy;
}

/** What `enableOAuth` publishes: the issuer, the resource (the MCP URL) and the scope names' prefix. */
export interface ApiOAuth {
  readonly issuer: string;
  readonly audience: string;
  readonly scopePrefix: string;
}

/**
 * What a body too big for the functions should do instead: the service's own 413 (a body over
 * MAX_REQUEST_BODY_BYTES that still fits Lambda once escaped) says the same.
 */
const UPLOAD_HINT =
  `send notebooks larger than ${MAX_REQUEST_BODY_BYTES} bytes with POST /v1/uploads (a presigned upload) ` +
  'and submit the notebook_uri it returns';

/**
 * Errors API Gateway answers itself, in the service's error shape. The DEFAULT_* entries keep the
 * gateway's own status (a 415 stays a 415); the others set theirs. `message` (JSON text) replaces
 * the gateway's own message.
 *
 * A body API Gateway takes (up to 10 MB) but Lambda does not (over 6 MB once escaped into the
 * proxy event) never reaches the service, so its 413 cannot answer it. AWS documents no response
 * type for that case (https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html
 * lists REQUEST_TOO_LARGE, 413, "the request too large error", and INTEGRATION_FAILURE, 504, "an
 * integration failed error"); reports show a 413 `Request Too Long` for a request Lambda refused
 * and a 502 INTEGRATION_FAILURE for a response over Lambda's limit. So both name the upload route:
 * REQUEST_TOO_LARGE as a 413; INTEGRATION_FAILURE stays a 502, since a crashed or throttled
 * function ends there too and must not leave the 5XX alarm as a client error.
 */
const GATEWAY_ERRORS: readonly { type: ResponseType; status?: string; code: string; message?: string }[] = [
  { type: ResponseType.UNAUTHORIZED, status: '401', code: 'unauthorized' },
  { type: ResponseType.ACCESS_DENIED, status: '403', code: 'forbidden' },
  // An unknown route: API Gateway calls it a missing token (403); callers expect a 404.
  { type: ResponseType.MISSING_AUTHENTICATION_TOKEN, status: '404', code: 'not_found' },
  {
    type: ResponseType.REQUEST_TOO_LARGE,
    status: '413',
    code: 'payload_too_large',
    message: JSON.stringify(`the request is too large for this API: ${UPLOAD_HINT}`),
  },
  { type: ResponseType.THROTTLED, status: '429', code: 'rate_limited' },
  {
    type: ResponseType.INTEGRATION_FAILURE,
    status: '502',
    code: 'integration_failed',
    message: JSON.stringify(
      `the API could not run this request (a request body over ${MAX_REQUEST_BODY_BYTES} bytes can be ` +
        `more than the function takes): ${UPLOAD_HINT}`,
    ),
  },
  { type: ResponseType.INTEGRATION_TIMEOUT, status: '504', code: 'timeout' },
  { type: ResponseType.DEFAULT_4XX, code: 'invalid_request' },
  { type: ResponseType.DEFAULT_5XX, code: 'internal' },
];

/** The REST API, its authorizer, stage and routes. */
export class NotebookJobsApi extends Construct {
  readonly restApi: RestApi;
  readonly accessLogs: LogGroup;
  /** The 401's challenge; `enableOAuth` adds the metadata URL and scopes to it. */
  private challenge = 'Bearer';

  constructor(scope: Construct, id: string, props: RestApiProps) {
    super(scope, id);
    this.accessLogs = new LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      removalPolicy: props.logRemovalPolicy,
    });
    this.restApi = new RestApi(this, 'RestApi', {
      description: 'notebook-jobs: run Jupyter notebooks as asynchronous jobs (REST and MCP)',
      endpointTypes: [EndpointType.REGIONAL],
      // Executed notebooks and logs are large JSON; compress when the client accepts it.
      minCompressionSize: Size.kibibytes(1),
      // Execution logging (ERROR level) needs API Gateway's account-wide CloudWatch role; kept on
      // stack deletion because other APIs in the account may rely on the same setting.
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
      deployOptions: {
        stageName: STAGE_NAME,
        throttlingRateLimit: props.throttleRate,
        throttlingBurstLimit: props.throttleBurst,
        loggingLevel: MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        metricsEnabled: true,
        tracingEnabled: props.tracing,
        accessLogDestination: new LogGroupLogDestination(this.accessLogs),
        accessLogFormat: AccessLogFormat.custom(
          JSON.stringify({
            requestId: AccessLogField.contextRequestId(),
            time: AccessLogField.contextRequestTime(),
            ip: AccessLogField.contextIdentitySourceIp(),
            method: AccessLogField.contextHttpMethod(),
            path: AccessLogField.contextPath(),
            status: AccessLogField.contextStatus(),
            responseLength: AccessLogField.contextResponseLength(),
            latencyMs: AccessLogField.contextResponseLatency(),
            principal: AccessLogField.contextAuthorizerPrincipalId(),
            authorizerError: AccessLogField.contextAuthorizeError(),
            integrationError: AccessLogField.contextIntegrationErrorMessage(),
            userAgent: AccessLogField.contextIdentityUserAgent(),
          }),
        ),
      },
    });
    // The stack exports the URL as ApiUrl; drop RestApi's own duplicate output.
    this.restApi.node.tryRemoveChild('Endpoint');
    for (const error of GATEWAY_ERRORS) {
      this.restApi.addGatewayResponse(`Gateway${error.code}`, {
        type: error.type,
        statusCode: error.status,
        responseHeaders:
          error.type === ResponseType.UNAUTHORIZED
            ? { 'WWW-Authenticate': Lazy.string({ produce: () => `'${this.challenge}'` }) }
            : undefined,
        templates: {
          'application/json': `{"error":{"code":"${error.code}","message":${error.message ?? '$context.error.messageString'}}}`,
        },
      });
    }

    // REQUEST type: a missing Authorization header is refused by API Gateway without invoking the
    // Lambda. Decisions are cached per header value, so a revoked token keeps working for up to the
    // TTL, and the authorizer must allow the whole API (not just the method called) in its policy.
    const authorizer = new RequestAuthorizer(this, 'BearerAuthorizer', {
      handler: props.authorizer.function,
      identitySources: [IdentitySource.header('Authorization')],
      resultsCacheTtl: AUTHORIZER_CACHE_TTL,
    });
    const authorized: MethodOptions = { authorizer, authorizationType: AuthorizationType.CUSTOM };
    const api = new LambdaIntegration(props.api.function, { proxy: true, allowTestInvoke: false });
    // /mcp streams (InvokeWithResponseStream; the handler is awslambda.streamifyResponse): a waiting
    // execute_notebook sends progress as SSE while it waits, so clients' timeouts reset (docs/mcp.md).
    const mcp = new LambdaIntegration(props.mcp.function, {
      proxy: true,
      allowTestInvoke: false,
      responseTransferMode: ResponseTransferMode.STREAM,
    });

    const v1 = this.restApi.root.addResource('v1');
    v1.addProxy({ defaultIntegration: api, defaultMethodOptions: authorized, anyMethod: true });
    // The route table (lambda/http/routes.ts) decides which routes need no token, as it does for
    // the api Lambda and the local server; routes outside /v1/ (openapi.json) get resources of
    // their own, with the authorizer unless public.
    for (const route of ROUTES) {
      const open = route.public !== undefined;
      if (!open && route.path.startsWith('/v1/')) continue; // the authorized proxy serves it
      const method = this.restApi.root
        .resourceForPath(route.path)
        .addMethod(route.method, api, open ? { authorizationType: AuthorizationType.NONE } : authorized);
      if (open) {
        acknowledge(method, 'APIG4', `${route.method} ${route.path} is public on purpose: ${route.public}.`);
        acknowledge(method, 'COG4', `${route.method} ${route.path} is public on purpose (see APIG4).`);
      }
    }
    // ANY: the handler itself answers GET and DELETE with 405 and `Allow: POST`, as MCP expects.
    const mcpResource = this.restApi.root.addResource('mcp', {
      defaultCorsPreflightOptions:
        props.mcpAllowedOrigins.length > 0
          ? {
              allowOrigins: [...props.mcpAllowedOrigins],
              allowMethods: ['POST', 'OPTIONS'],
              allowHeaders: [
                ...Cors.DEFAULT_HEADERS,
                'Mcp-Session-Id',
                'MCP-Protocol-Version',
                'Last-Event-ID',
              ],
              exposeHeaders: ['Mcp-Session-Id'],
            }
          : undefined,
    });
    mcpResource.addMethod('ANY', mcp, authorized);

    if (props.webAclArn) {
      new CfnWebACLAssociation(this, 'WebAcl', {
        resourceArn: Stack.of(this).formatArn({
          service: 'apigateway',
          account: '',
          resource: '/restapis',
          resourceName: `${this.restApi.restApiId}/stages/${this.restApi.deploymentStage.stageName}`,
        }),
        webAclArn: props.webAclArn,
      });
    } else {
      acknowledge(
        this.restApi.deploymentStage,
        'APIG3',
        'WAF is opt-in (context webAclArn) because a web ACL costs at least $5 a month plus per-request fees; every route but /v1/health needs a bearer token and the stage is throttled.',
      );
    }
    acknowledge(
      this.restApi,
      'APIG2',
      'Requests are validated by the handlers against the same zod schemas that generate /openapi.json, with error messages naming the field; a gateway model would duplicate them.',
    );
    acknowledge(
      this.restApi,
      'COG4',
      'Callers are programs and MCP clients with bearer tokens checked by a Lambda authorizer: API tokens (stored hashed in the job table, bound to a tenant and scopes) and, when OAuth is on, JWT access tokens from the Cognito pool or an external issuer. A Cognito authorizer could not accept the API tokens.',
    );
    acknowledge(
      this.restApi,
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
      'The AWS managed policy made for API Gateway execution logging; it only writes logs.',
    );
  }

  /** The MCP endpoint URL. */
  get mcpUrl(): string {
    return `${this.restApi.url}mcp`;
  }

  /**
   * This stage's base URL built from the API id, not from the stage resource: the authorizer's
   * environment names it, and the stage depends (through its methods) on the authorizer.
   */
  stageUrl(): string {
    const stack = Stack.of(this);
    return `https://${this.restApi.restApiId}.execute-api.${stack.region}.${stack.urlSuffix}/${STAGE_NAME}`;
  }

  /**
   * OAuth 2.1 (lib/auth.ts, lambda/auth): RFC 9728 metadata as static JSON from the gateway itself
   * (a mock integration: no Lambda, no token) at `<stage>/.well-known/oauth-protected-resource` and
   * `.../mcp`, and the 401's challenge naming it. On the execute-api domain every path is under the
   * stage, so the challenge names that URL (MCP clients follow `resource_metadata`); with a custom
   * domain mapped at its root and `oauthAudience` set to it, these are the RFC's own locations.
   */
  enableOAuth(oauth: ApiOAuth): void {
    const config = { ...oauth, tenantClaim: 'sub', clientIds: [] };
    const integration = new MockIntegration({
      passthroughBehavior: PassthroughBehavior.NEVER,
      requestTemplates: { 'application/json': '{"statusCode": 200}' },
      integrationResponses: [
        {
          statusCode: '200',
          responseTemplates: { 'application/json': JSON.stringify(protectedResourceMetadata(config)) },
        },
      ],
    });
    const wellKnown = this.restApi.root.resourceForPath(METADATA_PATH);
    for (const resource of [wellKnown, wellKnown.addResource('mcp')]) {
      const method = resource.addMethod('GET', integration, {
        authorizationType: AuthorizationType.NONE,
        methodResponses: [{ statusCode: '200' }],
      });
      const why =
        'OAuth protected-resource metadata (RFC 9728) is public by definition: it tells clients where to get a token';
      acknowledge(method, 'APIG4', `${why}.`);
      acknowledge(method, 'COG4', `${why} (see APIG4).`);
    }
    const scopes = scopeNames(oauth);
    const onStage = oauth.audience === `${this.stageUrl()}/mcp`;
    const metadata = onStage ? `${this.stageUrl()}${METADATA_PATH}/mcp` : metadataUrl(oauth.audience);
    this.challenge = `Bearer resource_metadata="${metadata}", scope="${scopes.read} ${scopes.write}"`;
  }
}
