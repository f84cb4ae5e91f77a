/**
 * Disposable services for integration tests, after nats.js's own tests: each test file starts its
 * own real server (nats-server, Temporal dev server, SeaweedFS) on random 127.0.0.1 ports in a
 * fresh temp state dir, and `stop()`s it in `afterAll` (stop also deletes the state dir). The
 * processes are not detached, so Ctrl-C on the test run ends them too; anything a crashed test run
 * leaves behind is removed by `sweepTestServices()`, which harness/run-tests.ts calls after jest.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TimeSkippingTestWorkflowEnvironmentOptions } from '@temporalio/testing';
import { NAMESPACE } from '../temporal-config';
import { DEFAULT_S3_REGION } from '../temporal-config';
import { resolveBinary } from '../infra/binaries';
import { ServiceStartError } from '../infra/errors';
import { ensureNatsCredentials, hostNatsUsers, type NatsUser } from '../infra/nats-credentials';
import { NATS_SERVICE_NAME, startNatsServer, stopNatsServer, type NatsServerTlsOptions } from '../infra/nats-server';
import { pickFreePort, pickFreePorts } from '../infra/ports';
import { startSeaweedServer, stopSeaweedServer } from '../infra/seaweedfs';
import type { SeaweedPorts } from '../infra/seaweedfs-files';
import { generateCredentials, SEAWEED_PORT_NAMES, SEAWEED_SERVICE_NAME, seaweedPaths } from '../infra/seaweedfs-files';
import type { ServiceRef } from '../infra/service';
import { serviceStatus, signalService } from '../infra/service';
import { waitForExit } from '../infra/service-files';
import { startTemporalDevServer, stopTemporalDevServer, TEMPORAL_SERVICE_NAME } from '../infra/temporal-server';
import { TEST_OWNER_FILE, TEST_STATE_PREFIX } from './test-sweep';

export { sweepTestServices } from './test-sweep';

/** How long `restart()` waits for a killed server to vanish (ms). */
const RESTART_WAIT_MS = 5_000;

/** A nats-server of one test file. */
export interface TestNats {
  /** `nats://127.0.0.1:<port>` */
  url: string;
  port: number;
  stateDir: string;
  /**
   * With `hosts`: the folder of the hosts' credentials files (`<hostId>.json`, 0600), to hand to
   * host agents as FERRY_NATS_CREDENTIALS_DIR.
   */
  credentialsDir?: string;
  /**
   * With `hosts`: a user that may publish and subscribe to everything, for a test's own client
   * (to watch subjects or forge messages).
   */
  admin?: NatsUser;
  /** Stops the server and deletes its state dir; safe to call twice. */
  stop(): Promise<void>;
  /** Sends `signal` to the server (default SIGKILL: a crash; SIGSTOP: a hang). */
  kill(signal?: NodeJS.Signals): void;
  /** Starts the server again on the same port (after `kill`), e.g. to test reconnects. */
  restart(): Promise<void>;
}

/** A Temporal dev server of one test file (headless, temp database). */
export interface TestTemporal {
  /** gRPC address, `127.0.0.1:<port>`. */
  address: string;
  port: number;
  namespace: string;
  stateDir: string;
  /** Stops the server and deletes its state dir (and database); safe to call twice. */
  stop(): Promise<void>;
  /** Sends `signal` to the server (default SIGKILL). */
  kill(signal?: NodeJS.Signals): void;
  /** Starts the server again on the same port and database: running workflows survive. */
  restart(): Promise<void>;
}

/** A SeaweedFS server of one test file: S3 on a random port, one random access key. */
export interface TestSeaweed {
  /** `http://127.0.0.1:<port>`; clients must use path-style addressing (`forcePathStyle: true`). */
  endpoint: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  stateDir: string;
  /** Where the buckets live; kept by `restart`, deleted by `stop`. */
  dataDir: string;
  /** Stops the server and deletes its state dir (and data); safe to call twice. */
  stop(): Promise<void>;
  /** Sends `signal` to the server (default SIGKILL: a crash; SIGSTOP: a hang). */
  kill(signal?: NodeJS.Signals): void;
  /** Starts the server again on the same ports, data and key (after `kill`): objects survive. */
  restart(): Promise<void>;
}

/** A fresh state dir `<tmp>/ferry-test-XXXXXX` recording this process as its owner. */
export function makeTestStateDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), TEST_STATE_PREFIX));
  fs.writeFileSync(path.join(dir, TEST_OWNER_FILE), `${process.pid}\n`);
  return dir;
}

function disposer(stateDir: string, stopServer: () => Promise<unknown>): () => Promise<void> {
  return async () => {
    if (!fs.existsSync(stateDir)) return;
    await stopServer();
    fs.rmSync(stateDir, { recursive: true, force: true });
  };
}

/**
 * Starts the service again. A signal sent by `kill` takes effect asynchronously, so a process
 * that is still there is given a moment to die first; one that does not (SIGSTOP) stays, and the
 * start reports it as already running.
 */
async function restartAfterKill(ref: ServiceRef, start: () => Promise<void>): Promise<void> {
  const status = serviceStatus(ref);
  if (status !== undefined) await waitForExit(status.pid, RESTART_WAIT_MS);
  await start();
}

/** Options of `startTestNats`. */
export interface TestNatsOptions {
  /** See NatsServerOptions.maxPendingBytes. */
  maxPendingBytes?: number;
  /**
   * Hosts to generate credentials for: the server then refuses anonymous clients and grants each
   * host only its subjects (see TestNats.credentialsDir and .admin). Default none: anyone may connect.
   */
  hosts?: readonly string[];
  /** TLS of client connections (see NatsServerOptions.tls). */
  tls?: NatsServerTlsOptions;
}

/**
 * Starts a nats-server on a random free port in a temp state dir (about 100 ms). A small
 * `maxPendingBytes` makes the server drop a stalled subscriber's messages early (fault tests).
 */
export async function startTestNats(opts: TestNatsOptions = {}): Promise<TestNats> {
  const stateDir = makeTestStateDir();
  const port = await pickFreePort();
  const credentialsDir = opts.hosts !== undefined ? path.join(stateDir, 'credentials') : undefined;
  const admin: NatsUser | undefined =
    credentialsDir !== undefined ? { user: 'test-admin', password: randomBytes(24).toString('base64url') } : undefined;
  const users =
    credentialsDir !== undefined && admin !== undefined
      ? [admin, ...hostNatsUsers(ensureNatsCredentials(credentialsDir, opts.hosts ?? []))]
      : undefined;
  const start = async (): Promise<void> => {
    await startNatsServer({
      stateDir,
      port,
      detached: false,
      ...(opts.maxPendingBytes !== undefined ? { maxPendingBytes: opts.maxPendingBytes } : {}),
      ...(users !== undefined ? { users } : {}),
      ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
    });
  };
  const ref = { name: NATS_SERVICE_NAME, stateDir };
  try {
    await start();
  } catch (error) {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    stateDir,
    ...(credentialsDir !== undefined ? { credentialsDir } : {}),
    ...(admin !== undefined ? { admin } : {}),
    stop: disposer(stateDir, () => stopNatsServer({ stateDir, stopGraceMs: 2_000 })),
    kill: (signal = 'SIGKILL') => void signalService(ref, signal),
    restart: () => restartAfterKill(ref, start),
  };
}

/** Starts a headless Temporal dev server on random free ports with a temp database (a few s). */
export async function startTestTemporal(): Promise<TestTemporal> {
  const stateDir = makeTestStateDir();
  let [port = 0, uiPort = 0] = await pickFreePorts(2);
  const start = async (): Promise<void> => {
    await startTemporalDevServer({ stateDir, port, uiPort, headless: true, detached: false });
  };
  const ref = { name: TEMPORAL_SERVICE_NAME, stateDir };
  try {
    await startOnFreePorts('Temporal', start, async () => {
      [port = 0, uiPort = 0] = await pickFreePorts(2);
    });
  } catch (error) {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw error;
  }
  return {
    address: `127.0.0.1:${port}`,
    port,
    namespace: NAMESPACE,
    stateDir,
    stop: disposer(stateDir, () => stopTemporalDevServer({ stateDir, stopGraceMs: 5_000 })),
    kill: (signal = 'SIGKILL') => void signalService(ref, signal),
    restart: () => restartAfterKill(ref, start),
  };
}

/** Starts of a test service, each on other ports, before its failure to start is reported. */
const TEST_START_ATTEMPTS = 3;

/**
 * Runs `start`; if the service's process exited while starting, picks other ports (`freshPorts`)
 * and starts it again, up to TEST_START_ATTEMPTS in all. Ports free a moment ago need not be free
 * when the service binds them: another service starting beside it (weed's eight, the Temporal dev
 * server's) takes ports the kernel hands out too, and the loser exits at once with "address
 * already in use". Any other failure is thrown as it is.
 */
async function startOnFreePorts(
  name: string,
  start: () => Promise<void>,
  freshPorts: () => Promise<void>,
): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await start();
      return;
    } catch (error) {
      if (attempt >= TEST_START_ATTEMPTS || !(error instanceof ServiceStartError) || error.reason !== 'exited')
        throw error;
      process.stderr.write(`test ${name} exited while starting (attempt ${attempt}), trying other ports\n`);
      await freshPorts();
    }
  }
}

/** Eight distinct ports that were free on 127.0.0.1 a moment ago, for one SeaweedFS server. */
export async function pickFreeSeaweedPorts(): Promise<SeaweedPorts> {
  const free = await pickFreePorts(SEAWEED_PORT_NAMES.length);
  return Object.fromEntries(SEAWEED_PORT_NAMES.map((name, index) => [name, free[index]])) as unknown as SeaweedPorts;
}

/**
 * Starts a SeaweedFS server (master, volume, filer, S3 gateway) on eight random free ports in a
 * temp state dir, with a freshly generated access key (about 3 s).
 */
export async function startTestSeaweed(): Promise<TestSeaweed> {
  const stateDir = makeTestStateDir();
  let { s3: port, ...internalPorts } = await pickFreeSeaweedPorts();
  const credentials = generateCredentials();
  const start = async (): Promise<void> => {
    await startSeaweedServer({ stateDir, port, internalPorts, credentials, detached: false });
  };
  const ref = { name: SEAWEED_SERVICE_NAME, stateDir };
  try {
    await startOnFreePorts('SeaweedFS', start, async () => {
      // The master's raft state names its old port: start from empty data.
      fs.rmSync(seaweedPaths(stateDir).dataDir, { recursive: true, force: true });
      ({ s3: port, ...internalPorts } = await pickFreeSeaweedPorts());
    });
  } catch (error) {
    fs.rmSync(stateDir, { recursive: true, force: true });
    throw error;
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    ...credentials,
    region: DEFAULT_S3_REGION,
    stateDir,
    dataDir: seaweedPaths(stateDir).dataDir,
    // A clean exit takes weed about 16 s (its filer waits out its gRPC streams); test data is
    // thrown away, so a prompt SIGKILL loses nothing.
    stop: disposer(stateDir, () => stopSeaweedServer({ stateDir, stopGraceMs: 1_000, removeData: true })),
    kill: (signal = 'SIGKILL') => void signalService(ref, signal),
    restart: () => restartAfterKill(ref, start),
  };
}

/**
 * Path of the pinned time-skipping test server (`temporal-test-server`), so that tests never
 * download one. Throws BinaryNotFoundError when infra/setup.sh has not run.
 */
export function timeSkippingServerPath(): string {
  return resolveBinary('temporal-test-server');
}

/**
 * Options for `TestWorkflowEnvironment.createTimeSkipping(...)` that run the pinned binary:
 * `{ server: { executable: { type: 'existing-path', path } } }` (shape of @temporalio/testing
 * 1.24's TimeSkippingTestWorkflowEnvironmentOptions).
 */
export function timeSkippingEnvironmentOptions(): TimeSkippingTestWorkflowEnvironmentOptions {
  return { server: { executable: { type: 'existing-path', path: timeSkippingServerPath() } } };
}
