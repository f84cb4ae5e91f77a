/**
 * A whole ferry cluster for one integration test file: a headless Temporal dev server and a
 * nats-server on random ports, the orchestrator worker and a host agent per host as real
 * processes, and a shared store directory, all under one temp state directory. `stop()` tears it
 * all down, VMM processes included.
 *
 * By default everything talks over 127.0.0.1. For network faults the host agents (and so their
 * VMMs) can reach nats-server through a TCP proxy the test stalls, or run in network namespaces of
 * their own (infra/netns.ts) whose migration link the test cuts. The services themselves stay on
 * 127.0.0.1: in namespaces, the host agents reach them through proxies that listen on the root
 * namespace's address of each link, so taking a link down cuts exactly that path.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NAMESPACE, type FerryEnvironment } from '../temporal-config';
import {
  clusterEnv,
  clusterWorkers,
  startWorker,
  stopAllVmms,
  stopWorker,
  type WorkerSpec,
} from '../infra/ferry-cluster';
import { createTestNetwork, type TestNetwork } from '../infra/netns';
import { startTcpProxy, type TcpProxy } from '../infra/tcp-proxy';
import { makeTestStateDir, startTestNats, startTestSeaweed, startTestTemporal } from './test-services';
import type { TestNats, TestSeaweed, TestTemporal } from './test-services';
import { createBucket } from '../infra/seaweedfs-bucket';

/** How a test cluster differs from the default, where everything talks over 127.0.0.1. */
export interface TestClusterOptions {
  /** Passed to the nats-server (see startTestNats). */
  natsMaxPendingBytes?: number;
  /**
   * The host agents and their VMMs reach nats-server through a TCP proxy on 127.0.0.1 that the
   * test controls (`cluster.natsProxy`), e.g. to stall the page stream. Default false.
   */
  natsProxy?: boolean;
  /**
   * Each host agent runs in a network namespace of its own (see infra/netns.ts): it reaches Temporal
   * over the control link and nats-server over the migration link, through proxies on the links'
   * root addresses (`cluster.natsProxy` is the migration link's); `cluster.network.cut()` takes the
   * migration link down. Needs root. Default false.
   */
  networkNamespaces?: boolean;
  /**
   * The hosts' default store: a directory in the state dir (default), or `s3`: a SeaweedFS server
   * of this cluster (`cluster.seaweed`) with a bucket, reached by the host agents (and by
   * `processEnv`) through FERRY_S3_*; in namespaces, through a proxy on the control link.
   */
  store?: 'directory' | 's3';
}

/** Bucket of a test cluster's S3 store. */
export const TEST_CLUSTER_BUCKET = 'ferry-test';

/** A running test cluster. */
export interface TestCluster {
  env: FerryEnvironment;
  temporal: TestTemporal;
  nats: TestNats;
  client: Client;
  hosts: string[];
  /** The proxy between the host agents and nats-server, with `natsProxy` or `networkNamespaces`. */
  natsProxy?: TcpProxy;
  /** The hosts' namespaces and links, with `networkNamespaces`. */
  network?: TestNetwork;
  /** The S3 server holding the store, with `store: 's3'`. */
  seaweed?: TestSeaweed;
  /** Environment for child processes (the CLI) that should talk to this cluster. */
  processEnv: NodeJS.ProcessEnv;
  /** Kills a worker (`orchestrator` or `host-<id>`) with `signal` (default SIGKILL) and waits for it to exit. */
  killWorker(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a killed worker again. */
  restartWorker(name: string): Promise<void>;
  /** Stops everything and deletes the state directory; safe to call twice. */
  stop(): Promise<void>;
}

/** How the host agents reach the services: their worker specs and what `stop` takes down. */
interface HostPaths {
  hostWorker(spec: WorkerSpec, hostId: string): WorkerSpec;
  natsProxy: TcpProxy | undefined;
  network: TestNetwork | undefined;
  /** Closes the proxies, then removes the network (throws if it cannot). */
  close(): Promise<void>;
}

async function hostPaths(
  stateDir: string,
  hosts: readonly string[],
  services: { temporal: TestTemporal; nats: TestNats; seaweed: TestSeaweed | undefined },
  opts: TestClusterOptions,
): Promise<HostPaths> {
  const proxies: TcpProxy[] = [];
  let network: TestNetwork | undefined;
  const close = async (): Promise<void> => {
    await Promise.all(proxies.map((p) => p.close()));
    network?.remove();
  };
  const proxy = async (targetPort: number, listenHost: string | undefined): Promise<TcpProxy> => {
    const started = await startTcpProxy({ targetPort, ...(listenHost !== undefined ? { listenHost } : {}) });
    proxies.push(started);
    return started;
  };
  try {
    if (opts.networkNamespaces === true) network = createTestNetwork(stateDir, hosts);
    const natsProxy =
      opts.natsProxy === true || network ? await proxy(services.nats.port, network?.rootAddress.migration) : undefined;
    const temporalProxy = network ? await proxy(services.temporal.port, network.rootAddress.control) : undefined;
    // The store is on the control side: cutting the migration link must leave the file reachable.
    const s3Proxy =
      network && services.seaweed ? await proxy(services.seaweed.port, network.rootAddress.control) : undefined;
    const env: NodeJS.ProcessEnv = {
      ...(s3Proxy ? { FERRY_S3_ENDPOINT: `http://${s3Proxy.host}:${s3Proxy.port}` } : {}),
      ...(natsProxy ? { FERRY_NATS_URL: `nats://${natsProxy.host}:${natsProxy.port}` } : {}),
      ...(temporalProxy ? { FERRY_TEMPORAL_ADDRESS: `${temporalProxy.host}:${temporalProxy.port}` } : {}),
    };
    const namespaces = network?.namespaces ?? {};
    return {
      hostWorker: (spec, hostId) => ({
        ...spec,
        env,
        ...(namespaces[hostId] !== undefined ? { netns: namespaces[hostId] } : {}),
      }),
      natsProxy,
      network,
      close,
    };
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }
}

/**
 * Starts a cluster with `hosts` (default h1, h2). Takes a few seconds (server start, workflow
 * bundle). See TestClusterOptions for the network variants; all default to 127.0.0.1 only.
 */
export async function startTestCluster(
  hosts: string[] = ['h1', 'h2'],
  opts: TestClusterOptions = {},
): Promise<TestCluster> {
  const stateDir = makeTestStateDir();
  const natsOptions = {
    hosts,
    ...(opts.natsMaxPendingBytes !== undefined ? { maxPendingBytes: opts.natsMaxPendingBytes } : {}),
  };
  const [temporal, nats, seaweed] = await Promise.all([
    startTestTemporal(),
    startTestNats(natsOptions),
    opts.store === 's3' ? startTestSeaweed() : undefined,
  ]);
  const s3 = seaweed && {
    endpoint: seaweed.endpoint,
    port: seaweed.port,
    accessKeyId: seaweed.accessKeyId,
    secretAccessKey: seaweed.secretAccessKey,
    region: seaweed.region,
  };
  const env: FerryEnvironment = {
    stateDir,
    toolsDir: '',
    temporalAddress: temporal.address,
    temporalPort: temporal.port,
    temporalUiPort: 0,
    natsUrl: nats.url,
    natsPort: nats.port,
    clusterSecretFile: path.join(stateDir, 'cluster.key'),
    natsCredentialsDir: nats.credentialsDir ?? path.join(stateDir, 'credentials', 'nats'),
    storeDir: path.join(stateDir, 'store'),
    store: seaweed ? `s3://${TEST_CLUSTER_BUCKET}/${path.basename(stateDir)}` : path.join(stateDir, 'store'),
    storeRoots: [path.join(stateDir, 'store')],
    ...(s3 ? { s3 } : {}),
  };
  let paths: HostPaths | undefined;
  let connection: Connection | undefined;
  let workers: WorkerSpec[] = [];
  const stop = async (): Promise<void> => {
    await connection?.close().catch(() => undefined);
    for (const w of workers) await stopWorker(stateDir, w.name, 'SIGKILL').catch(() => undefined);
    stopAllVmms(stateDir);
    // The network goes before the state dir that records it; a failure to remove it is reported
    // after everything else is down.
    const networkRemoved = paths?.close().then(
      () => undefined,
      (err: unknown) => err,
    );
    await Promise.all([temporal.stop(), nats.stop(), seaweed?.stop()]);
    const networkError = await networkRemoved;
    fs.rmSync(stateDir, { recursive: true, force: true });
    if (networkError !== undefined) throw networkError;
  };
  try {
    if (seaweed) await createBucket(seaweed, TEST_CLUSTER_BUCKET);
    paths = await hostPaths(stateDir, hosts, { temporal, nats, seaweed }, opts);
    const { hostWorker } = paths;
    workers = clusterWorkers(hosts).map((w) => {
      const hostId = hosts.find((h) => w.name === `host-${h}`);
      return hostId === undefined ? w : hostWorker(w, hostId);
    });
    await Promise.all(workers.map((w) => startWorker(env, w)));
    connection = await Connection.connect({ address: temporal.address });
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  const client = new Client({ connection, namespace: NAMESPACE });
  const spec = (name: string): WorkerSpec => {
    const found = workers.find((w) => w.name === name);
    if (!found) throw new Error(`no worker ${name} in this cluster (${workers.map((w) => w.name).join(', ')})`);
    return found;
  };
  return {
    env,
    temporal,
    nats,
    client,
    hosts,
    ...(paths.natsProxy ? { natsProxy: paths.natsProxy } : {}),
    ...(paths.network ? { network: paths.network } : {}),
    ...(seaweed ? { seaweed } : {}),
    processEnv: clusterEnv(env),
    killWorker: async (name, signal = 'SIGKILL') => {
      await stopWorker(stateDir, spec(name).name, signal);
    },
    restartWorker: async (name) => {
      await startWorker(env, spec(name));
    },
    stop,
  };
}
