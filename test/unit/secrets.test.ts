/**
 * Secrets: reference rules per tenant (lambda/core/secrets.ts), redaction (container/runner/redact.ts)
 * and the AWS path: each secret is read with a runner role session whose policy names that one secret
 * (aws-sdk-client-mock; exact inputs asserted).
 */
import { mockClient } from 'aws-sdk-client-mock';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { afterEach, describe, expect, it } from 'vitest';
import { checkSecrets, secretEnvPrefixProblem, type SecretPolicy } from '../../lambda/core/secrets.ts';
import { InvalidRequestError } from '../../lambda/core/errors.ts';
import { Redactor } from '../../container/runner/redact.ts';
import {
  policyText,
  secretReaderPolicy,
  secretReaderSession,
} from '../../container/runner/job-credentials.ts';
import { awsSecretSources, resolveSecrets, SecretUnavailableError } from '../../container/runner/secrets.ts';
import { kernelEnvironment } from '../../lambda/kernels/kernel-env.ts';

const AWS: SecretPolicy = { schemes: ['secretsmanager', 'ssm'], envPrefix: 'NOTEBOOK_SECRET_' };
const ROLE = 'arn:aws:iam::123456789012:role/runner';
const SCOPE = {
  runnerRoleArn: ROLE,
  region: 'eu-west-1',
  tenant: 'acme',
  jobId: 'job_01KAB3C4D5E6F7G8H9JKMNPQRSTV',
};

describe('references a tenant may name', () => {
  it.each([
    'secretsmanager:notebook-jobs/acme/db',
    'secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:notebook-jobs/acme/db-AbCdEf',
    'ssm:/notebook-jobs/acme/api/key',
  ])('accepts its own %s', (reference) => {
    expect(() => checkSecrets('acme', { DB: reference }, AWS)).not.toThrow();
  });

  it.each([
    'secretsmanager:notebook-jobs/other/db',
    'secretsmanager:notebook-jobs/acme',
    'secretsmanager:notebook-jobs/acme/../other/db',
    'secretsmanager:notebook-jobs/acme/*',
    'secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:notebook-jobs/other/db-AbCdEf',
    'secretsmanager:prod/db',
    'ssm:/notebook-jobs/other/key',
    'ssm:notebook-jobs/acme/key',
    'ssm:/notebook-jobs/acme/../other/key',
    'env:NOTEBOOK_SECRET_X',
  ])("refuses %s (another tenant's, a wildcard, or not resolved here)", (reference) => {
    expect(() => checkSecrets('acme', { DB: reference }, AWS)).toThrow(InvalidRequestError);
  });

  it.each(['NOTEBOOK_', 'AWS_', 'NOTEBOOK_JOBS_', 'A', 'PY', 'LD_X', 'x-y'])(
    'refuses the env prefix %s (it would reach service or reserved variables)',
    (prefix) => expect(secretEnvPrefixProblem(prefix)).not.toBeNull(),
  );
  it('accepts the default env prefix', () => expect(secretEnvPrefixProblem('NOTEBOOK_SECRET_')).toBeNull());

  it('a kernel environment refuses a reserved job variable even when submit was bypassed', () => {
    expect(() =>
      kernelEnvironment({ from: {}, workDir: '/w', jobVariables: { LD_PRELOAD: 'x.so' } }),
    ).toThrow(/reserved/);
    expect(kernelEnvironment({ from: {}, workDir: '/w', jobVariables: { DB_PW: 'abcd' } }).DB_PW).toBe(
      'abcd',
    );
  });
});

describe('redaction', () => {
  const r = new Redactor();
  r.add('PW', 'p@ss "wörd" 1234');
  it.each([
    ['raw', 'x p@ss "wörd" 1234 y'],
    ['JSON-escaped', JSON.stringify({ a: 'p@ss "wörd" 1234' })],
    ['ASCII JSON', '"p@ss \\"w\\u00f6rd\\" 1234"'],
    ['base64', Buffer.from('p@ss "wörd" 1234').toString('base64')],
    ['base64 at an offset', Buffer.from('hello: p@ss "wörd" 1234 bye').toString('base64')],
    ['URL-encoded', `?pw=${encodeURIComponent('p@ss "wörd" 1234')}`],
    ['form-encoded', 'pw=p%40ss+%22w%C3%B6rd%22+1234'],
  ])('removes the %s form', (_what, text) => {
    const out = r.text(text);
    expect(out).toContain('[redacted:PW]');
    expect(out).not.toContain('1234');
  });

  it('redacts a value cut at the end of a truncated line', () => {
    expect(r.truncated('start p@ss "wö')).toBe('start [redacted:PW]');
    expect(r.text('start p@ss "wö')).toBe('start p@ss "wö');
  });

  it('redacts a file the notebook wrote, binary or text, keeping every other byte as it was', () => {
    const binary = Buffer.concat([
      Buffer.from([0x89, 0x50, 0xff, 0xfe, 0x00]),
      Buffer.from('p@ss "wörd" 1234'),
      Buffer.from([0xc3, 0x28, 0x00]),
      Buffer.from(Buffer.from('p@ss "wörd" 1234').toString('base64')),
    ]);
    const out = r.bytes(binary);
    expect(out.subarray(0, 5)).toEqual(binary.subarray(0, 5)); // not decoded as UTF-8
    expect(out.toString('latin1')).not.toContain(Buffer.from('1234').toString('latin1'));
    expect(out.toString('latin1').match(/\[redacted:PW\]/g)).toHaveLength(2);
    expect(out.subarray(-3 - Buffer.byteLength('[redacted:PW]'))).toEqual(
      Buffer.concat([Buffer.from([0xc3, 0x28, 0x00]), Buffer.from('[redacted:PW]')]),
    );
    expect(new Redactor().bytes(binary)).toBe(binary); // nothing to redact: the same buffer
  });

  it('redacts each line of a multi-line value', () => {
    const pem = new Redactor();
    pem.add('KEY', 'BEGIN KEY\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nEND KEY');
    expect(pem.text('MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu')).toBe(
      '[redacted:KEY]',
    );
  });
});

describe('AWS secrets', () => {
  const sts = mockClient(STSClient);
  const sm = mockClient(SecretsManagerClient);
  const ssm = mockClient(SSMClient);
  afterEach(() => {
    sts.reset();
    sm.reset();
    ssm.reset();
  });
  /** STS answers every AssumeRole with an hour's credentials. */
  const stsGrantsSessions = () =>
    sts.on(AssumeRoleCommand).resolves({
      Credentials: {
        AccessKeyId: 'AK',
        SecretAccessKey: 'SK',
        SessionToken: 'ST',
        Expiration: new Date(Date.now() + 3_600_000),
      },
    });

  it('the session that reads a secret may read that secret only', () => {
    expect(secretReaderPolicy(SCOPE, { scheme: 'secretsmanager', target: 'notebook-jobs/acme/db' })).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: 'secretsmanager:GetSecretValue',
          Resource: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:notebook-jobs/acme/db-??????',
        },
      ],
    });
    const parameter = 'arn:aws:ssm:eu-west-1:123456789012:parameter/notebook-jobs/acme/k';
    expect(secretReaderPolicy(SCOPE, { scheme: 'ssm', target: '/notebook-jobs/acme/k' }).Statement).toEqual([
      { Effect: 'Allow', Action: 'ssm:GetParameter', Resource: parameter },
      // SecureString: decrypted by KMS for Parameter Store, for this parameter only.
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: 'arn:aws:kms:eu-west-1:123456789012:key/*',
        Condition: {
          StringEquals: {
            'kms:ViaService': 'ssm.eu-west-1.amazonaws.com',
            'kms:EncryptionContext:PARAMETER_ARN': parameter,
          },
        },
      },
    ]);
    expect(() => secretReaderPolicy(SCOPE, { scheme: 'ssm', target: '/notebook-jobs/other/k' })).toThrow(
      /only its own parameters/,
    );
    // Another tenant's secret, or a secret of another account, never reaches a policy.
    expect(() =>
      secretReaderPolicy(SCOPE, { scheme: 'secretsmanager', target: 'notebook-jobs/other/db' }),
    ).toThrow();
    expect(() =>
      secretReaderPolicy(SCOPE, {
        scheme: 'secretsmanager',
        target: 'arn:aws:secretsmanager:eu-west-1:999999999999:secret:notebook-jobs/acme/db-AbCdEf',
      }),
    ).toThrow(/account/);
  });

  it('a secret reader session assumes the runner role with exactly that policy', async () => {
    stsGrantsSessions();
    const reference = { scheme: 'secretsmanager' as const, target: 'notebook-jobs/acme/db' };
    await secretReaderSession(new STSClient({ region: 'eu-west-1' }), SCOPE, reference).provider();
    expect(sts.commandCalls(AssumeRoleCommand).map((c) => c.args[0].input)).toEqual([
      {
        RoleArn: ROLE,
        RoleSessionName: SCOPE.jobId,
        DurationSeconds: 3600,
        Policy: JSON.stringify(secretReaderPolicy(SCOPE, reference)),
      },
    ]);
  });

  it('resolves a secret with a session naming it, and fails naming the reference (not a value)', async () => {
    stsGrantsSessions();
    sm.on(GetSecretValueCommand, { SecretId: 'notebook-jobs/acme/db' }).resolves({
      SecretString: 'db-Password-1',
    });
    const notFound = Object.assign(new Error('Secrets Manager cannot find the secret'), {
      name: 'ResourceNotFoundException',
    });
    sm.on(GetSecretValueCommand, { SecretId: 'notebook-jobs/acme/gone' }).rejects(notFound);
    const sources = awsSecretSources(new STSClient({ region: 'eu-west-1' }), SCOPE);
    const redactor = new Redactor();
    const values = await resolveSecrets(
      { tenant: 'acme', secrets: { DB: 'secretsmanager:notebook-jobs/acme/db' } },
      sources,
      redactor,
    );
    expect(values).toEqual({ DB: 'db-Password-1' });
    expect(redactor.text('x db-Password-1')).toBe('x [redacted:DB]');
    expect(sm.commandCalls(GetSecretValueCommand).map((c) => c.args[0].input)).toEqual([
      { SecretId: 'notebook-jobs/acme/db' },
    ]);
    const failing = resolveSecrets(
      { tenant: 'acme', secrets: { X: 'secretsmanager:notebook-jobs/acme/gone' } },
      sources,
      redactor,
    );
    await expect(failing).rejects.toThrow(SecretUnavailableError);
    await expect(failing).rejects.toThrow(
      'secret X (secretsmanager:notebook-jobs/acme/gone): cannot be read (ResourceNotFoundException)',
    );
    // A record naming another tenant's secret (written around the api) is refused before any call.
    const calls = sm.commandCalls(GetSecretValueCommand).length;
    await expect(
      resolveSecrets(
        { tenant: 'acme', secrets: { X: 'secretsmanager:notebook-jobs/other/db' } },
        sources,
        redactor,
      ),
    ).rejects.toThrow(/only its own secrets/);
    expect(sm.commandCalls(GetSecretValueCommand).length).toBe(calls);
  });

  it('the longest parameter path a tenant may name still fits a session policy', () => {
    const tenant = 't'.repeat(128);
    const longest = `/notebook-jobs/${tenant}/${'p'.repeat(639 - 15 - tenant.length)}`;
    const scope = { ...SCOPE, tenant, runnerRoleArn: 'arn:aws-us-gov:iam::123456789012:role/runner' };
    checkSecrets(tenant, { K: `ssm:${longest}` }, AWS);
    expect(() => policyText(secretReaderPolicy(scope, { scheme: 'ssm', target: longest }))).not.toThrow();
    expect(() => checkSecrets(tenant, { K: `ssm:${longest}x` }, AWS)).toThrow(InvalidRequestError);
  });

  it('resolves an ssm: parameter decrypted, with a session naming it; a missing one fails naming the reference', async () => {
    stsGrantsSessions();
    ssm.on(GetParameterCommand, { Name: '/notebook-jobs/acme/api/key' }).resolves({
      Parameter: { Name: '/notebook-jobs/acme/api/key', Type: 'SecureString', Value: 'api-Key-42' },
    });
    const notFound = Object.assign(new Error('Parameter /notebook-jobs/acme/gone not found.'), {
      name: 'ParameterNotFound',
    });
    ssm.on(GetParameterCommand, { Name: '/notebook-jobs/acme/gone' }).rejects(notFound);
    const sources = awsSecretSources(new STSClient({ region: 'eu-west-1' }), SCOPE);
    const redactor = new Redactor();

    const values = await resolveSecrets(
      { tenant: 'acme', secrets: { API_KEY: 'ssm:/notebook-jobs/acme/api/key' } },
      sources,
      redactor,
    );

    expect(values).toEqual({ API_KEY: 'api-Key-42' });
    expect(ssm.commandCalls(GetParameterCommand).map((c) => c.args[0].input)).toEqual([
      { Name: '/notebook-jobs/acme/api/key', WithDecryption: true },
    ]);
    // Read with a runner role session whose policy names that parameter (and its decryption) only.
    const client = ssm.commandCalls(GetParameterCommand)[0]?.thisValue as SSMClient;
    await client.config.credentials();
    expect(sts.commandCalls(AssumeRoleCommand).map((c) => c.args[0].input)).toEqual([
      {
        RoleArn: ROLE,
        RoleSessionName: SCOPE.jobId,
        DurationSeconds: 3600,
        Policy: JSON.stringify(
          secretReaderPolicy(SCOPE, { scheme: 'ssm', target: '/notebook-jobs/acme/api/key' }),
        ),
      },
    ]);
    // Redacted like every other secret, in its encodings too.
    expect(redactor.text('key=api-Key-42')).toBe('key=[redacted:API_KEY]');
    expect(redactor.text(Buffer.from('api-Key-42').toString('base64'))).toBe('[redacted:API_KEY]');

    const failing = resolveSecrets(
      { tenant: 'acme', secrets: { GONE: 'ssm:/notebook-jobs/acme/gone' } },
      sources,
      redactor,
    );
    await expect(failing).rejects.toThrow(SecretUnavailableError);
    await expect(failing).rejects.toThrow(
      'secret GONE (ssm:/notebook-jobs/acme/gone): cannot be read (ParameterNotFound)',
    );
    // Another tenant's parameter in a record written around the api: refused before any call.
    const calls = ssm.commandCalls(GetParameterCommand).length;
    await expect(
      resolveSecrets({ tenant: 'acme', secrets: { X: 'ssm:/notebook-jobs/other/key' } }, sources, redactor),
    ).rejects.toThrow(/only its own parameters/);
    expect(ssm.commandCalls(GetParameterCommand).length).toBe(calls);
  });
});
