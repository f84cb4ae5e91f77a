import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { embeddedStoreFromFlag } from '../../cli/demo-command';
import {
  ClusterStoreMismatchError,
  clusterStoreRecord,
  EMBEDDED_S3_STORE,
  embeddedStoreEnvironment,
  readClusterStore,
  removeClusterStore,
  sameStore,
  writeClusterStore,
} from '../../infra/cluster-store';
import { embeddedSeaweedPorts } from '../../infra/seaweedfs-embedded';
import { ferryEnvironment } from '../../temporal-config';

const env = ferryEnvironment({ FERRY_STATE_DIR: '/tmp/ferry-state' });
const key = { FERRY_S3_ACCESS_KEY_ID: 'ferry', FERRY_S3_SECRET_ACCESS_KEY: 'secret' };

describe('the --store of ferry up and ferry demo', () => {
  it('chooses the embedded S3 store, the store directory, or leaves the default', () => {
    expect(embeddedStoreFromFlag('s3')).toBe('s3');
    expect(embeddedStoreFromFlag('dir')).toBe('directory');
    expect(embeddedStoreFromFlag('directory')).toBe('directory');
    expect(embeddedStoreFromFlag(undefined)).toBeUndefined();
  });

  it('refuses any other store with one line naming the value and the choices', () => {
    const attempt = (): unknown => embeddedStoreFromFlag('nfs');
    expect(attempt).toThrow(expect.objectContaining({ name: 'CliError', exitCode: 2 }));
    expect(attempt).toThrow('--store must be s3 (the embedded SeaweedFS) or dir (the store directory), got "nfs"');
  });
});

describe('embeddedStoreEnvironment', () => {
  it('puts the hosts on s3://ferry/pages with the endpoint and key of FERRY_S3_*', () => {
    const s3 = embeddedStoreEnvironment(env, 's3', { FERRY_S3_ENDPOINT: 'http://127.0.0.1:18333', ...key });
    expect(s3.store).toBe(EMBEDDED_S3_STORE);
    expect(s3.s3).toMatchObject({ endpoint: 'http://127.0.0.1:18333', port: 18333, accessKeyId: 'ferry' });
    expect(clusterStoreRecord(s3)).toEqual({ store: 's3://ferry/pages', s3Endpoint: 'http://127.0.0.1:18333' });
  });

  it('puts the hosts on the store directory for `directory`, and leaves the environment alone without a choice', () => {
    const onS3 = embeddedStoreEnvironment(env, 's3', key);
    expect(embeddedStoreEnvironment(onS3, 'directory')).toEqual({ ...env, store: '/tmp/ferry-state/store' });
    expect(embeddedStoreEnvironment(env, undefined)).toBe(env);
    expect(clusterStoreRecord(env)).toEqual({ store: '/tmp/ferry-state/store' });
  });

  it('refuses an endpoint the embedded server on 127.0.0.1 cannot serve', () => {
    expect(() => embeddedStoreEnvironment(env, 's3', { FERRY_S3_ENDPOINT: 'https://s3.example.com', ...key })).toThrow(
      expect.objectContaining({ name: 'EmbeddedS3EndpointError' }),
    );
    expect(() => embeddedStoreEnvironment(env, 's3', { FERRY_S3_ENDPOINT: 'http://10.0.0.5:8333', ...key })).toThrow(
      '--store s3 runs SeaweedFS on http://127.0.0.1, but FERRY_S3_ENDPOINT is http://10.0.0.5:8333',
    );
  });
});

describe("the record of the host agents' store", () => {
  it('round-trips, defaults to the store directory, and tells a cluster on another store apart', () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-unit-store-'));
    const local = ferryEnvironment({ FERRY_STATE_DIR: stateDir });
    try {
      expect(readClusterStore(local)).toEqual({ store: path.join(stateDir, 'store') });
      const s3 = { store: EMBEDDED_S3_STORE, s3Endpoint: 'http://127.0.0.1:8333', embeddedSeaweed: true };
      writeClusterStore(stateDir, s3);
      expect(readClusterStore(local)).toEqual(s3);
      expect(sameStore(s3, { store: EMBEDDED_S3_STORE, s3Endpoint: 'http://127.0.0.1:8333' })).toBe(true);
      expect(sameStore(s3, { store: EMBEDDED_S3_STORE, s3Endpoint: 'http://127.0.0.1:9000' })).toBe(false);
      expect(sameStore(s3, clusterStoreRecord(local))).toBe(false);
      expect(new ClusterStoreMismatchError(stateDir, s3, clusterStoreRecord(local)).message).toBe(
        `the cluster in ${stateDir} is up on store s3://ferry/pages (S3 at http://127.0.0.1:8333), ` +
          `not on ${path.join(stateDir, 'store')}: its host agents keep the store they were started with; ` +
          'run `ferry down` first to switch stores',
      );
      removeClusterStore(stateDir);
      expect(readClusterStore(local)).toEqual({ store: path.join(stateDir, 'store') });
    } finally {
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

describe('embeddedSeaweedPorts', () => {
  it("takes the gateway's next seven ports, and a free one instead of a busy neighbour", async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen({ port: 0, host: '127.0.0.1' }, resolve));
    const busyPort = (busy.address() as net.AddressInfo).port;
    try {
      const ports = await embeddedSeaweedPorts(busyPort - 1);
      const values = Object.values(ports);
      expect(values).not.toContain(busyPort);
      expect(values).not.toContain(busyPort - 1);
      expect(new Set(values).size).toBe(7);
    } finally {
      busy.close();
    }
  });
});
