/**
 * Brings the embedded default up and down: the Temporal dev server, nats-server, the orchestrator
 * worker and one host agent per host, all on 127.0.0.1 with state under one directory; on the S3
 * store also a SeaweedFS server (seaweedfs-embedded.ts; the store choice: cluster-store.ts).
 * Starting what already runs reports it and leaves it; stopping what is not running says so.
 * `down` also stops the VMM processes the hosts left running (a host agent's restart never does
 * that).
 *
 * Access: every host brought up gets a NATS user of its own (nats-credentials.ts, a 0600 file in
 * FERRY_NATS_CREDENTIALS_DIR, kept across runs), and nats-server grants each only its subjects;
 * the first `up --store s3` generates SeaweedFS's S3 key into the state dir (cluster-store.ts).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostTaskQueue, type FerryEnvironment } from '../temporal-config';
import { clusterStoreRecord, describeStore, embeddedStoreEnvironment, forgetOwners } from './cluster-store';
import { ClusterStoreMismatchError, EMBEDDED_S3_BUCKET, type EmbeddedStore } from './cluster-store';
import { readClusterStore, removeClusterStore, sameStore, writeClusterStore } from './cluster-store';
import { ensureNatsCredentials, hostNatsUsers, readAllNatsCredentials } from './nats-credentials';
import { startNatsServer, stopNatsServer } from './nats-server';
import { embeddedSeaweedRunning, startEmbeddedSeaweed, stopEmbeddedSeaweed } from './seaweedfs-embedded';
import { isProcessGoneError } from './service-files';
import { startTemporalDevServer, stopTemporalDevServer } from './temporal-server';

/** How long a worker may take to report that it serves its queue (ms); bundling workflows takes a few seconds. */
export const WORKER_START_TIMEOUT_MS = 60_000;
/** Grace between SIGTERM and SIGKILL when stopping a worker (ms). */
export const WORKER_STOP_GRACE_MS = 10_000;

/** A worker process of the cluster. */
export interface WorkerSpec {
  /** `orchestrator` or `host-<id>`: the name of its pid and log files. */
  name: string;
  script: string;
  args: string[];
  /**
   * Network namespace to run the worker in, through `ip netns exec` (which execs, so the pid stays
   * the worker's); the VMMs a host agent spawns inherit it. Default: the caller's namespace.
   */
  netns?: string;
  /** Environment overriding clusterEnv's for this worker alone, e.g. another FERRY_NATS_URL. */
  env?: NodeJS.ProcessEnv;
}

/** The workers of the embedded default for `hosts`. */
export function clusterWorkers(hosts: readonly string[]): WorkerSpec[] {
  const dist = path.resolve(__dirname, '..');
  return [
    { name: 'orchestrator', script: path.join(dist, 'workers', 'orchestrator.js'), args: [] },
    ...hosts.map((h) => ({
      name: `host-${h}`,
      script: path.join(dist, 'workers', 'host-agent.js'),
      args: ['--host', h],
    })),
  ];
}

function workerFiles(stateDir: string, name: string): { pidFile: string; logFile: string } {
  const dir = path.join(stateDir, 'workers');
  fs.mkdirSync(dir, { recursive: true });
  return { pidFile: path.join(dir, `${name}.pid`), logFile: path.join(dir, `${name}.log`) };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Sends `signal` to `pid`; false when the process is already gone. A process can exit between the
 * check that it runs and the kill, so a vanished one is not an error.
 */
function signalIfRunning(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch (error) {
    if (isProcessGoneError(error)) return false;
    throw error;
  }
}

/** Whether `pid` is alive and its command line contains `marker` (so a reused pid is not ours). */
function runs(pid: number, marker: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

/** The content of `file`, or undefined when it does not exist (a stop may remove it at any moment). */
function readIfExists(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The pid of a running worker, or undefined. */
export function workerPid(stateDir: string, name: string): number | undefined {
  const pid = Number(readIfExists(workerFiles(stateDir, name).pidFile));
  return Number.isInteger(pid) && pid > 0 && runs(pid, `${path.sep}workers${path.sep}`) ? pid : undefined;
}

/** Environment that points a worker at this cluster's services. */
export function clusterEnv(env: FerryEnvironment): NodeJS.ProcessEnv {
  return {
    ...process.env,
    FERRY_STATE_DIR: env.stateDir,
    FERRY_STORE_DIR: env.storeDir,
    FERRY_STORE: env.store,
    FERRY_CLUSTER_SECRET_FILE: env.clusterSecretFile,
    ...(env.s3
      ? {
          FERRY_S3_ENDPOINT: env.s3.endpoint,
          // A key kept in a file stays there: the workers read it as this process did.
          ...(env.s3.credentialsFile !== undefined
            ? { FERRY_S3_CREDENTIALS_FILE: env.s3.credentialsFile }
            : { FERRY_S3_ACCESS_KEY_ID: env.s3.accessKeyId, FERRY_S3_SECRET_ACCESS_KEY: env.s3.secretAccessKey }),
          FERRY_S3_REGION: env.s3.region,
        }
      : {}),
    FERRY_TEMPORAL_ADDRESS: env.temporalAddress,
    FERRY_NATS_URL: env.natsUrl,
    FERRY_NATS_CREDENTIALS_DIR: env.natsCredentialsDir,
    ...(env.natsTls
      ? {
          FERRY_NATS_TLS_CA: env.natsTls.caFile,
          ...(env.natsTls.serverCertFile !== undefined
            ? { FERRY_NATS_TLS_SERVER_CERT: env.natsTls.serverCertFile }
            : {}),
          ...(env.natsTls.serverKeyFile !== undefined ? { FERRY_NATS_TLS_SERVER_KEY: env.natsTls.serverKeyFile } : {}),
        }
      : {}),
  };
}

/** Starts a worker detached (it outlives the CLI) and waits for its "serving" line. */
export async function startWorker(env: FerryEnvironment, spec: WorkerSpec): Promise<string> {
  const running = workerPid(env.stateDir, spec.name);
  if (running !== undefined) return `${spec.name} already running (pid ${running})`;
  const { pidFile, logFile } = workerFiles(env.stateDir, spec.name);
  const logStart = fs.existsSync(logFile) ? fs.statSync(logFile).size : 0;
  const log = fs.openSync(logFile, 'a');
  const argv = [process.execPath, spec.script, ...spec.args];
  const [command, ...args] = spec.netns === undefined ? argv : ['ip', 'netns', 'exec', spec.netns, ...argv];
  const child = spawn(command as string, args, {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...clusterEnv(env), ...spec.env },
  });
  fs.closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error(`cannot start ${spec.name}`);
  fs.writeFileSync(pidFile, String(child.pid));
  const deadline = Date.now() + WORKER_START_TIMEOUT_MS;
  for (;;) {
    const text = fs.readFileSync(logFile, 'utf8').slice(logStart);
    if (/serving /.test(text)) return `${spec.name} started (pid ${child.pid})`;
    if (!alive(child.pid) || Date.now() > deadline) {
      const why = alive(child.pid) ? 'did not report serving in time' : 'exited';
      throw new Error(`${spec.name} ${why}; log ${logFile}:\n${text.split('\n').slice(-15).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops a worker: SIGTERM (Temporal workers drain), then SIGKILL after the grace period. */
export async function stopWorker(stateDir: string, name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<string> {
  const pid = workerPid(stateDir, name);
  if (pid === undefined) return `${name} not running`;
  signalIfRunning(pid, signal);
  const deadline = Date.now() + WORKER_STOP_GRACE_MS;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) signalIfRunning(pid, 'SIGKILL');
  fs.rmSync(workerFiles(stateDir, name).pidFile, { force: true });
  return `${name} stopped`;
}

/**
 * Kills (SIGKILL) every worker recorded under `stateDir` whose process still runs a ferry worker
 * script (a reused pid is left alone). For sweeping what a crashed test run left behind.
 */
export function killAllWorkers(stateDir: string): string[] {
  const dir = path.join(stateDir, 'workers');
  if (!fs.existsSync(dir)) return [];
  const messages: string[] = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.pid'))) {
    const pid = Number(readIfExists(path.join(dir, file)));
    if (!runs(pid, `${path.sep}workers${path.sep}`) || !signalIfRunning(pid, 'SIGKILL')) continue;
    messages.push(`killed leftover worker ${file.slice(0, -4)} (pid ${pid}, state ${stateDir})`);
  }
  return messages;
}

/** Options of `clusterUp`. */
export interface ClusterUpOptions {
  /**
   * The host agents' store: `s3` starts the embedded SeaweedFS and uses its store
   * (EMBEDDED_S3_STORE), `directory` the store directory; default `env.store` as it is.
   */
  store?: EmbeddedStore;
}

function workerNames(stateDir: string): string[] {
  const workersDir = path.join(stateDir, 'workers');
  return fs.existsSync(workersDir)
    ? fs
        .readdirSync(workersDir)
        .filter((f) => f.endsWith('.pid'))
        .map((f) => f.slice(0, -4))
    : [];
}

/** Throws ClusterStoreMismatchError when host agents run on another store than `env`'s. */
function assertHostsOnStore(env: FerryEnvironment): void {
  const hostsUp = workerNames(env.stateDir).some((n) => n.startsWith('host-') && workerPid(env.stateDir, n));
  if (!hostsUp) return;
  const running = readClusterStore(env);
  const wanted = clusterStoreRecord(env);
  if (!sameStore(running, wanted)) throw new ClusterStoreMismatchError(env.stateDir, running, wanted);
}

/** Ids of the VMs recorded under the state directory's hosts, each once. */
function recordedVmIds(stateDir: string): string[] {
  const hostsDir = path.join(stateDir, 'hosts');
  if (!fs.existsSync(hostsDir)) return [];
  const ids = fs.readdirSync(hostsDir).flatMap((host) => {
    const vmsDir = path.join(hostsDir, host, 'vms');
    return fs.existsSync(vmsDir)
      ? fs
          .readdirSync(vmsDir)
          .filter((f) => f.endsWith('.json'))
          .map((f) => f.slice(0, -5))
      : [];
  });
  return [...new Set(ids)];
}

/** Stops every VMM process recorded under the state directory's hosts. */
export function stopAllVmms(stateDir: string): string[] {
  const hostsDir = path.join(stateDir, 'hosts');
  const messages: string[] = [];
  if (!fs.existsSync(hostsDir)) return messages;
  for (const host of fs.readdirSync(hostsDir)) {
    const vmsDir = path.join(hostsDir, host, 'vms');
    if (!fs.existsSync(vmsDir)) continue;
    for (const file of fs.readdirSync(vmsDir).filter((f) => f.endsWith('.json'))) {
      // A host agent destroying the VM meanwhile removes the record; its VMM is then gone too.
      const text = readIfExists(path.join(vmsDir, file));
      if (text === undefined) continue;
      const record = JSON.parse(text) as { vmId: string; pid: number };
      if (runs(record.pid, 'vmm-process.js') && signalIfRunning(record.pid, 'SIGKILL')) {
        messages.push(`VM ${record.vmId} on ${host} stopped (pid ${record.pid})`);
      }
      fs.rmSync(path.join(vmsDir, file), { force: true });
    }
  }
  return messages;
}

/**
 * Starts services and workers; returns one line per component. Throws ClusterStoreMismatchError,
 * before starting anything, when host agents already run on another store.
 */
export async function clusterUp(
  ferryEnv: FerryEnvironment,
  hosts: readonly string[],
  options: ClusterUpOptions = {},
): Promise<string[]> {
  const env = embeddedStoreEnvironment(ferryEnv, options.store);
  assertHostsOnStore(env);
  const lines: string[] = [];
  const temporal = await startTemporalDevServer({
    stateDir: env.stateDir,
    port: env.temporalPort,
    uiPort: env.temporalUiPort,
  });
  lines.push(`${temporal.message}; Web UI http://127.0.0.1:${env.temporalUiPort}`);
  // Every host ever brought up keeps its user, so that agents of an earlier `up` stay valid.
  ensureNatsCredentials(env.natsCredentialsDir, hosts);
  const nats = await startNatsServer({
    stateDir: env.stateDir,
    port: env.natsPort,
    users: hostNatsUsers(readAllNatsCredentials(env.natsCredentialsDir)),
    ...(env.natsTls?.serverCertFile !== undefined && env.natsTls.serverKeyFile !== undefined
      ? { tls: { certFile: env.natsTls.serverCertFile, keyFile: env.natsTls.serverKeyFile } }
      : {}),
  });
  lines.push(nats.message);
  if (options.store === 's3' && env.s3)
    lines.push(await startEmbeddedSeaweed(env.stateDir, env.s3, EMBEDDED_S3_BUCKET));
  const store = { ...clusterStoreRecord(env), ...(options.store === 's3' ? { embeddedSeaweed: true } : {}) };
  writeClusterStore(env.stateDir, store);
  for (const spec of clusterWorkers(hosts)) lines.push(await startWorker(env, spec));
  lines.push(`hosts: ${hosts.map((h) => `${h} (${hostTaskQueue(h)})`).join(', ')}`);
  if (options.store === 's3') lines.push(`store: ${describeStore(store)}`);
  return lines;
}

/**
 * Stops workers, VMMs and services, SeaweedFS included; returns one line per component. The stopped
 * VMs' ownership records are removed from the hosts' store (a failure to is reported, not thrown).
 */
export async function clusterDown(env: FerryEnvironment): Promise<string[]> {
  const lines: string[] = [];
  const store = readClusterStore(env);
  for (const name of workerNames(env.stateDir)) lines.push(await stopWorker(env.stateDir, name));
  const vmIds = recordedVmIds(env.stateDir);
  lines.push(...stopAllVmms(env.stateDir));
  // Those VMs are gone: their ownership records in the store would only block their ids.
  const seaweedDown = store.embeddedSeaweed === true && !embeddedSeaweedRunning(env.stateDir);
  lines.push(
    ...(await forgetOwners(store, vmIds, seaweedDown ? 'SeaweedFS of this state dir is not running' : undefined)),
  );
  removeClusterStore(env.stateDir);
  const seaweed = stopEmbeddedSeaweed(env.stateDir);
  lines.push((await stopNatsServer({ stateDir: env.stateDir })).message);
  lines.push((await stopTemporalDevServer({ stateDir: env.stateDir })).message);
  const seaweedLine = await seaweed;
  if (seaweedLine !== undefined) lines.push(seaweedLine);
  return lines;
}
