/**
 * Where job tasks run and what they can reach. A Fargate task needs ECR (image pull), S3, DynamoDB,
 * CloudWatch Logs, STS (the runner's job-scoped session) and EventBridge; notebooks often want the
 * internet (pip, NuGet, data downloads).
 *
 * - public (default): tasks get a public IP in public subnets and reach everything through the
 *   internet gateway, notebooks included. No NAT gateway (about $32 a month plus $0.045/GB, per
 *   AZ). Nothing can connect in: the security group has no ingress rule. S3 and DynamoDB traffic
 *   uses free gateway endpoints, so notebook and job-record traffic stays on the AWS network.
 * - private: tasks run in isolated subnets with no route out of the VPC (no NAT, no internet
 *   gateway route, no public IP). The runner reaches AWS through VPC endpoints only: S3 and
 *   DynamoDB gateways; ECR api + dkr, CloudWatch Logs, STS and EventBridge interface endpoints
 *   (private DNS; each about $7 a month per AZ), which accept HTTPS from the task security group
 *   only. A notebook can then reach nothing but those AWS APIs, with whatever credentials it has
 *   (none, or its tenant's notebook role). With an existing VPC (vpcId) its isolated subnets are
 *   used and providing the endpoints is the VPC owner's call.
 *
 * A created VPC spans two AZs, records its flow logs in CloudWatch Logs, and its default security
 * group has no rules (CDK removes them with a small custom resource).
 */
import { Fn, RemovalPolicy } from 'aws-cdk-lib';
import {
  FlowLogDestination,
  FlowLogTrafficType,
  GatewayVpcEndpointAwsService,
  InterfaceVpcEndpointAwsService,
  Peer,
  Port,
  SecurityGroup,
  SubnetType,
  Vpc,
  type IVpc,
  type SubnetSelection,
} from 'aws-cdk-lib/aws-ec2';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { Egress } from './stack-config.ts';

/** The interface endpoints a task in a private (isolated) network needs, by construct id. */
export const PRIVATE_INTERFACE_ENDPOINTS = {
  EcrApi: InterfaceVpcEndpointAwsService.ECR,
  EcrDocker: InterfaceVpcEndpointAwsService.ECR_DOCKER,
  Logs: InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
  Sts: InterfaceVpcEndpointAwsService.STS,
  Events: InterfaceVpcEndpointAwsService.EVENTBRIDGE,
} as const;

export interface NetworkProps {
  readonly vpcId: string | undefined;
  readonly egress: Egress;
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
    const isPublic = props.egress === 'public';
    this.assignPublicIp = isPublic;
    this.taskSubnets = { subnetType: isPublic ? SubnetType.PUBLIC : SubnetType.PRIVATE_ISOLATED };
    if (props.vpcId) {
      // Someone else's VPC: used as it is. Adding endpoints or flow logs to it is their call.
      this.vpc = Vpc.fromLookup(this, 'Vpc', { vpcId: props.vpcId });
    } else {
      const vpc = new Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: 0,
        // The default security group loses its rules (nothing uses it; a resource put in it by
        // mistake would otherwise talk to everything else in it, and out to anywhere).
        restrictDefaultSecurityGroup: true,
        // private: isolated subnets only, so the VPC has no internet gateway at all.
        subnetConfiguration: [
          isPublic
            ? { name: 'public', subnetType: SubnetType.PUBLIC, cidrMask: 22 }
            : { name: 'tasks', subnetType: SubnetType.PRIVATE_ISOLATED, cidrMask: 22 },
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
    if (!isPublic && !props.vpcId) {
      const endpointSecurityGroup = new SecurityGroup(this, 'EndpointSecurityGroup', {
        vpc: this.vpc,
        description: 'notebook-jobs VPC interface endpoints: HTTPS from runner tasks only',
        allowAllOutbound: false,
      });
      endpointSecurityGroup.addIngressRule(
        Peer.securityGroupId(this.taskSecurityGroup.securityGroupId),
        Port.tcp(443),
        'HTTPS from runner tasks',
      );
      for (const [id, service] of Object.entries(PRIVATE_INTERFACE_ENDPOINTS)) {
        (this.vpc as Vpc).addInterfaceEndpoint(id, {
          service,
          privateDnsEnabled: true,
          open: false,
          securityGroups: [endpointSecurityGroup],
          subnets: this.taskSubnets,
        });
      }
    }
  }

  /** The task subnet ids, comma-separated (NOTEBOOK_JOBS_SUBNETS). */
  subnetIdList(): string {
    return Fn.join(',', this.vpc.selectSubnets(this.taskSubnets).subnetIds);
  }
}
