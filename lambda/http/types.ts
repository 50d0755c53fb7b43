/** A transport-neutral HTTP request/response, built from node:http locally and API Gateway on AWS. */
export interface ApiRequest {
  method: string;
  /** Path without query string, e.g. /v1/jobs/job_.../logs */
  path: string;
  query: Record<string, string>;
  /** Lower-cased header names. */
  headers: Record<string, string | undefined>;
  body: Buffer | null;
  /** The authenticated tenant (local mode: "local"). */
  tenant: string;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}
