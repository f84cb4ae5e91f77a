import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ensureS3CredentialsFile } from '../../infra/seaweedfs-files';
import { ferryEnvironment, s3Environment } from '../../temporal-config';

describe('ferryEnvironment', () => {
  it('reads ports from the environment it is given, not only from process.env', () => {
    const env = ferryEnvironment({ FERRY_TEMPORAL_PORT: '17233', FERRY_NATS_PORT: '14222', FERRY_STATE_DIR: '/tmp/x' });
    expect(env).toMatchObject({
      temporalPort: 17233,
      temporalAddress: '127.0.0.1:17233',
      natsPort: 14222,
      natsUrl: 'nats://127.0.0.1:14222',
      stateDir: '/tmp/x',
      storeDir: '/tmp/x/store',
      clusterSecretFile: '/tmp/x/cluster.key',
    });
    expect(ferryEnvironment({ FERRY_CLUSTER_SECRET_FILE: '/etc/ferry/cluster.key' }).clusterSecretFile).toBe(
      '/etc/ferry/cluster.key',
    );
  });

  it('refuses a port that is not a port number, naming the variable', () => {
    expect(() => ferryEnvironment({ FERRY_NATS_PORT: '70000' })).toThrow('FERRY_NATS_PORT must be a port number');
  });
});

describe('s3Environment', () => {
  it('takes an explicit endpoint and credentials, and defaults to the embedded server on loopback', () => {
    const key = { FERRY_S3_ACCESS_KEY_ID: 'k', FERRY_S3_SECRET_ACCESS_KEY: 's' };
    expect(s3Environment(key)).toMatchObject({ endpoint: 'http://127.0.0.1:8333', port: 8333, region: 'us-east-1' });
    expect(
      s3Environment({
        FERRY_S3_ENDPOINT: 'http://127.0.0.1:9000/',
        FERRY_S3_ACCESS_KEY_ID: 'k',
        FERRY_S3_SECRET_ACCESS_KEY: 's',
      }),
    ).toMatchObject({ endpoint: 'http://127.0.0.1:9000', port: 9000, accessKeyId: 'k', secretAccessKey: 's' });
  });

  it('reads the key that the first `ferry up --store s3` generated under the state dir, 0600', () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-unit-s3-key-'));
    try {
      expect(() => s3Environment({ FERRY_STATE_DIR: stateDir })).toThrow(
        `no S3 key: ${path.join(stateDir, 'credentials', 's3.json')} does not exist`,
      );
      const generated = ensureS3CredentialsFile(path.join(stateDir, 'credentials', 's3.json'));
      expect(generated.accessKeyId).not.toBe('ferry');
      expect(ensureS3CredentialsFile(path.join(stateDir, 'credentials', 's3.json'))).toEqual(generated);
      expect(fs.statSync(path.join(stateDir, 'credentials', 's3.json')).mode & 0o777).toBe(0o600);
      expect(s3Environment({ FERRY_STATE_DIR: stateDir })).toMatchObject({
        ...generated,
        credentialsFile: path.join(stateDir, 'credentials', 's3.json'),
      });
      expect(() => s3Environment({ FERRY_STATE_DIR: stateDir, FERRY_S3_ACCESS_KEY_ID: 'k' })).toThrow(
        'set both or neither',
      );
    } finally {
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('refuses an endpoint that is not an http(s) URL', () => {
    expect(() => s3Environment({ FERRY_S3_ENDPOINT: 'ftp://x' })).toThrow('FERRY_S3_ENDPOINT must use http or https');
    expect(() => s3Environment({ FERRY_S3_ENDPOINT: 'not a url' })).toThrow('must be an http(s) URL');
  });
});
