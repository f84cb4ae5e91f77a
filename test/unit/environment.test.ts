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
    expect(s3Environment({})).toMatchObject({ endpoint: 'http://127.0.0.1:8333', port: 8333, region: 'us-east-1' });
    expect(
      s3Environment({
        FERRY_S3_ENDPOINT: 'http://127.0.0.1:9000/',
        FERRY_S3_ACCESS_KEY_ID: 'k',
        FERRY_S3_SECRET_ACCESS_KEY: 's',
      }),
    ).toMatchObject({ endpoint: 'http://127.0.0.1:9000', port: 9000, accessKeyId: 'k', secretAccessKey: 's' });
  });

  it('refuses an endpoint that is not an http(s) URL', () => {
    expect(() => s3Environment({ FERRY_S3_ENDPOINT: 'ftp://x' })).toThrow('FERRY_S3_ENDPOINT must use http or https');
    expect(() => s3Environment({ FERRY_S3_ENDPOINT: 'not a url' })).toThrow('must be an http(s) URL');
  });
});
