/**
 * Where job tasks run. A Fargate task needs outbound access to ECR (image pull), S3, DynamoDB,
 * CloudWatch Logs and EventBridge, and notebooks often need the internet (pip, NuGet).
 *
 * - public (default): tasks get a public IP in public subnets and reach everything through the
 *   internet gateway. No NAT gateway (about $32 a month plus $0.045/GB, per AZ), no interface
 *   endpoints (about $7 a month each per AZ). Nothing can connect in: the security group has no
 *   ingress rule. S3 and DynamoDB traffic uses free gateway endpoints, so notebook and job-record
 *   traffic stays on the AWS network.
 * - private: tasks have no public IP; a created VPC gets one NAT gateway for their outbound traffic.
 *   With an existing VPC (vpcId) its private subnets must already have a way out (NAT or endpoints).
 *
 * A created VPC spans two AZs and records its flow logs in CloudWatch Logs.
 */
import { Fn, RemovalPolicy } from 'aws-cdk-lib';
import {
  FlowLogDestination,
  FlowLogTrafficType,
  GatewayVpcEndpointAwsService,
  SecurityGroup,
  SubnetType,
  Vpc,
  type IVpc,
  type SubnetSelection,
} from 'aws-cdk-lib/aws-ec2';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { TaskSubnets } from './stack-config.ts';

export interface NetworkProps {
  readonly vpcId: string | undefined;
  readonly taskSubnets: TaskSubnets;
  readonly logRetention: RetentionDays;
  readonly logRemovalPolicy: RemovalPolicy;
}

/** The VPC, the subnets and security group job tasks use, and whether they get a public IP. */
export class Network extends Construct {
  readonly vpc: IVpc;
  readonly taskSubnets: SubnetSelection;
  readonly taskSecurityGroup: SecurityGroup;
  readonly assignPublicIp: boolean;

  constructor(scope: Construct, id: string, props: NetworkProps) {
    super(scope, id);
    const isPublic = props.taskSubnets === 'public';
    this.assignPublicIp = isPublic;
    this.taskSubnets = { subnetType: isPublic ? SubnetType.PUBLIC : SubnetType.PRIVATE_WITH_EGRESS };
    if (props.vpcId) {
      // Someone else's VPC: used as it is. Adding endpoints or flow logs to it is their call.
      this.vpc = Vpc.fromLookup(this, 'Vpc', { vpcId: props.vpcId });
    } else {
      const vpc = new Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: isPublic ? 0 : 1,
        subnetConfiguration: [
          { name: 'public', subnetType: SubnetType.PUBLIC, cidrMask: 22 },
          ...(isPublic ? [] : [{ name: 'tasks', subnetType: SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 22 }]),
        ],
        gatewayEndpoints: {
          S3: { service: GatewayVpcEndpointAwsService.S3 },
          DynamoDB: { service: GatewayVpcEndpointAwsService.DYNAMODB },
        },
      });
      vpc.addFlowLog('FlowLogs', {
        trafficType: FlowLogTrafficType.ALL,
        destination: FlowLogDestination.toCloudWatchLogs(
          new LogGroup(this, 'FlowLogGroup', {
            retention: props.logRetention,
            removalPolicy: props.logRemovalPolicy,
          }),
        ),
      });
      this.vpc = vpc;
    }
    this.taskSecurityGroup = new SecurityGroup(this, 'TaskSecurityGroup', {
      vpc: this.vpc,
      description: 'notebook-jobs runner tasks: outbound only, nothing connects in',
      allowAllOutbound: true,
    });
  }

  /** The task subnet ids, comma-separated (NOTEBOOK_JOBS_SUBNETS). */
  subnetIdList(): string {
    return Fn.join(',', this.vpc.selectSubnets(this.taskSubnets).subnetIds);
  }
}
