/**
 * The CDK app (cdk.json: `node --import tsx bin/cdk.ts`). One stack, named by context `stackName`
 * (default NotebookJobs). It is environment-agnostic, so `cdk synth` needs no credentials, unless
 * context vpcId asks to look up an existing VPC: that needs the account and region, which the CDK
 * CLI derives from the caller's credentials (CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION).
 *
 * cdk-nag's AwsSolutions checks run on every synth: an unacknowledged finding fails it.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { NotebookJobsStack } from '../lib/notebook-jobs-stack.ts';
import { readStackConfig } from '../lib/stack-config.ts';

const app = new App();
const config = readStackConfig(app.node);
const stackName = app.node.tryGetContext('stackName') ?? 'NotebookJobs';
if (typeof stackName !== 'string' || !/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(stackName)) {
  throw new Error(
    `context stackName must be a CloudFormation stack name (letters, digits, -), got ${stackName}`,
  );
}

let env: { account: string; region: string } | undefined;
if (config.vpcId) {
  const account = process.env.CDK_DEFAULT_ACCOUNT;
  const region = process.env.CDK_DEFAULT_REGION;
  if (!account || !region) {
    throw new Error(
      `context vpcId=${config.vpcId} needs the target account and region to look the VPC up: run the CDK CLI ` +
        'with AWS credentials and a region (AWS_REGION), or leave vpcId out to create a VPC',
    );
  }
  env = { account, region };
}

new NotebookJobsStack(app, stackName, {
  config,
  env,
  description: 'notebook-jobs: run Jupyter notebooks as asynchronous jobs (REST, MCP) on ECS Fargate',
});
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
