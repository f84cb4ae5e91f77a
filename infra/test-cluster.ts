/**
 * A whole ferry cluster for one integration test file: a headless Temporal dev server and a
 * nats-server on random ports, the orchestrator worker and a host agent per host as real
 * processes, and a shared store directory, all under one temp state directory. `stop()` tears it
 * all down, VMM processes included.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NAMESPACE, type FerryEnvironment } from '../temporal-config';
import { clusterEnv, clusterWorkers, startWorker, stopAllVmms, stopWorker, type WorkerSpec } from './ferry-cluster';
import { makeTestStateDir, startTestNats, startTestTemporal, type TestNats, type TestTemporal } from './test-services';

/** A running test cluster. */
export interface TestCluster {
  env: FerryEnvironment;
  temporal: TestTemporal;
  nats: TestNats;
  client: Client;
  hosts: string[];
  /** Environment for child processes (the CLI) that should talk to this cluster. */
  processEnv: NodeJS.ProcessEnv;
  /** Kills a worker (`orchestrator` or `host-<id>`) with `signal` (default SIGKILL) and waits for it to exit. */
  killWorker(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a killed worker again. */
  restartWorker(name: string): Promise<void>;
  /** Stops everything and deletes the state directory; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts a cluster with `hosts` (default h1, h2). Takes a few seconds (server start, workflow
 * bundle). `natsMaxPendingBytes` is passed to the nats-server (see startTestNats).
 */
export async function startTestCluster(
  hosts: string[] = ['h1', 'h2'],
  opts: { natsMaxPendingBytes?: number } = {},
): Promise<TestCluster> {
  const stateDir = makeTestStateDir();
  const natsOptions = opts.natsMaxPendingBytes !== undefined ? { maxPendingBytes: opts.natsMaxPendingBytes } : {};
  const [temporal, nats] = await Promise.all([startTestTemporal(), startTestNats(natsOptions)]);
  const env: FerryEnvironment = {
    stateDir,
    toolsDir: '',
    temporalAddress: temporal.address,
    temporalPort: temporal.port,
    temporalUiPort: 0,
    natsUrl: nats.url,
    natsPort: nats.port,
    storeDir: path.join(stateDir, 'store'),
  };
  const workers = clusterWorkers(hosts);
  let connection: Connection | undefined;
  const stop = async (): Promise<void> => {
    await connection?.close().catch(() => undefined);
    for (const w of workers) await stopWorker(stateDir, w.name, 'SIGKILL').catch(() => undefined);
    stopAllVmms(stateDir);
    await Promise.all([temporal.stop(), nats.stop()]);
    fs.rmSync(stateDir, { recursive: true, force: true });
  };
  try {
    await Promise.all(workers.map((w) => startWorker(env, w)));
    connection = await Connection.connect({ address: temporal.address });
  } catch (err) {
    await stop();
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
