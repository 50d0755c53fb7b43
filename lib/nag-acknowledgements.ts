/**
 * cdk-nag acknowledgements, kept next to the resources they concern. cdk-nag 3 reads CDK's own
 * `Validations.of(construct).acknowledge()` metadata; a wildcard IAM finding must be acknowledged
 * one resource at a time, by the exact text cdk-nag derives from the policy. `wildcardFinding`
 * derives that text from the same token the policy uses, so an acknowledgement follows a renamed
 * construct instead of silently going stale.
 */
import { Stack, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** Acknowledges one AwsSolutions rule (or one finding of it) on a construct and its children. */
export function acknowledge(scope: IConstruct, rule: string, reason: string): void {
  Validations.of(scope).acknowledge({ id: `AwsSolutions-${rule}`, reason });
}

/** Acknowledges AwsSolutions-IAM5 for each wildcard resource (a string that may hold tokens). */
export function acknowledgeWildcardResources(
  scope: IConstruct,
  resources: readonly string[],
  reason: string,
): void {
  for (const resource of resources) acknowledge(scope, wildcardFinding(scope, resource), reason);
}

/** The IAM5 finding id cdk-nag reports for a wildcard resource, e.g. `IAM5[Resource::<Table.Arn>/index/*]`. */
export function wildcardFinding(scope: IConstruct, resource: string): string {
  return `IAM5[Resource::${flatten(Stack.of(scope).resolve(resource))}]`;
}

/** The same flattening cdk-nag applies to policy resources before reporting them. */
function flatten(node: unknown): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (isObject(node)) {
    const join = node['Fn::Join'];
    if (Array.isArray(join)) {
      const [delimiter, items] = join as [string, unknown[]];
      return items.map(flatten).join(delimiter);
    }
    if ('Fn::Sub' in node) return flatten(node['Fn::Sub']);
    const getAtt = node['Fn::GetAtt'];
    if (Array.isArray(getAtt)) return `<${flatten(getAtt[0])}.${flatten(getAtt[1])}>`;
    if ('Fn::ImportValue' in node) return flatten(node['Fn::ImportValue']);
    if ('Ref' in node) return `<${flatten(node.Ref)}>`;
  }
  return JSON.stringify(node);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
