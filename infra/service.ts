/**
 * A managed service: one long-lived process with its log and pid record in
 * `<stateDir>/<name>/`, reachable on one TCP port of 127.0.0.1.
 *
 * Semantics: `startService` is idempotent (a live service whose port answers is reported as
 * already running and left alone) and returns only once the port accepts connections and the
 * optional readiness check passed; on failure it kills what it launched and throws with the log's
 * tail. `stopService` is idempotent too: SIGTERM, a grace period, then SIGKILL; stopping what is
 * not running succeeds and says so.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { PortInUseError, ServiceStartError, ServiceStopError } from './errors';
import { waitForFreePort, waitForPort } from './ports';
import {
  fileSize,
  isRecordAlive,
  logTail,
  readPidRecord,
  removePidFile,
  servicePaths,
  waitForExit,
  writePidRecord,
} from './service-files';
import type { PidRecord } from './service-files';

export { isPortFree, pickFreePort } from './ports';

/** How long a start may take until the port answers and the readiness check passes (ms). */
export const DEFAULT_START_TIMEOUT_MS = 30_000;
/** How long a stop waits after SIGTERM before it sends SIGKILL (ms). */
export const DEFAULT_STOP_GRACE_MS = 10_000;
/** How long a process may take to vanish after SIGKILL before the stop fails (ms). */
const KILL_WAIT_MS = 5_000;
/** How long a start waits for the port of its own previous, dead process to be released (ms). */
const PORT_RELEASE_GRACE_MS = 2_000;

/** What to run and where; see `startService`. */
export interface ServiceSpec {
  /** Short name: the folder under `stateDir` and the name in messages, e.g. `nats`. */
  name: string;
  /** Absolute path of the executable. */
  command: string;
  args: readonly string[];
  /** Root state directory; the service's files go to `<stateDir>/<name>/`. */
  stateDir: string;
  /** Port on 127.0.0.1 that answers once the service is up. */
  port: number;
  /** Added to (and overriding) this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Default DEFAULT_START_TIMEOUT_MS. */
  startTimeoutMs?: number;
  /**
   * Own session and process group, so the service outlives the starter and a terminal's Ctrl-C
   * (default true). Test disposables pass false so that Ctrl-C on the test run ends them too.
   */
  detached?: boolean;
  /** Extra readiness check after the port opens; gets the port and the time left (ms); throws if not ready. */
  ready?: (port: number, remainingMs: number) => Promise<void>;
  /** Appended to the PortInUseError message, e.g. `set FERRY_NATS_PORT`. */
  portHint?: string;
  /** Runs just before a launch (never when already running), e.g. to write a config file. */
  beforeSpawn?: () => void;
}

/** Outcome of `startService`. */
export interface ServiceStartResult {
  state: 'started' | 'already-running';
  name: string;
  pid: number;
  port: number;
  logFile: string;
  /** One line for a user, e.g. `nats already running (pid 123, port 4222)`. */
  message: string;
}

/** Outcome of `stopService`: `killed` means SIGTERM was not enough. */
export interface ServiceStopResult {
  state: 'stopped' | 'killed' | 'not-running';
  name: string;
  message: string;
}

/** Identifies a service's files; `stopGraceMs` defaults to DEFAULT_STOP_GRACE_MS. */
export interface ServiceRef {
  name: string;
  stateDir: string;
  stopGraceMs?: number;
}

function sendSignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** SIGTERM, wait `graceMs`, SIGKILL. Resolves how the process ended; throws ServiceStopError. */
async function terminate(name: string, pid: number, graceMs: number): Promise<'stopped' | 'killed'> {
  try {
    sendSignal(pid, 'SIGTERM');
    // A service paused for fault injection (SIGSTOP) only acts on SIGTERM once continued.
    sendSignal(pid, 'SIGCONT');
    if (await waitForExit(pid, graceMs)) return 'stopped';
    sendSignal(pid, 'SIGKILL');
  } catch (error) {
    throw new ServiceStopError(name, pid, 'cannot signal the process', { cause: error });
  }
  if (await waitForExit(pid, KILL_WAIT_MS)) return 'killed';
  throw new ServiceStopError(name, pid, `still alive ${KILL_WAIT_MS} ms after SIGKILL`);
}

async function alreadyRunning(
  spec: ServiceSpec,
  existing: PidRecord,
  logFile: string,
  deadline: number,
): Promise<ServiceStartResult> {
  if (spec.ready) await spec.ready(existing.port, Math.max(0, deadline - Date.now()));
  const moved = existing.port === spec.port ? '' : `, not on the requested port ${spec.port}`;
  return {
    state: 'already-running',
    name: spec.name,
    pid: existing.pid,
    port: existing.port,
    logFile,
    message: `${spec.name} already running (pid ${existing.pid}, port ${existing.port}${moved})`,
  };
}

/**
 * Starts `spec` unless it already runs. Throws PortInUseError when the port is taken by another
 * process, ServiceStartError (with the log tail) when the process exits early, the port does not
 * open within the timeout, or the readiness check fails.
 */
export async function startService(spec: ServiceSpec): Promise<ServiceStartResult> {
  const paths = servicePaths(spec.stateDir, spec.name);
  const timeoutMs = spec.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  fs.mkdirSync(paths.dir, { recursive: true });
  const fail = (reason: 'exited' | 'timeout' | 'not-ready', detail: string, offset: number, cause?: unknown) =>
    new ServiceStartError(spec.name, spec.port, reason, detail, paths.logFile, logTail(paths.logFile, offset), {
      cause,
    });

  const existing = readPidRecord(paths.pidFile);
  if (existing !== undefined && isRecordAlive(existing)) {
    // It may still be starting (another process launched it a moment ago): give it the timeout.
    const up = await waitForPort(existing.port, timeoutMs, { abort: () => !isRecordAlive(existing) });
    if (isRecordAlive(existing)) {
      if (!up) {
        const detail = `process ${existing.pid} from an earlier start is alive but port ${existing.port} is silent`;
        throw fail('timeout', `${detail}; stop it first`, 0);
      }
      return alreadyRunning(spec, existing, paths.logFile, deadline);
    }
    // It died while we looked (e.g. killed a moment ago): start afresh below.
  }
  if (existing !== undefined) removePidFile(paths.pidFile);
  // A service that has just died may hold its port a moment longer; a stranger's port gets no grace.
  const graceMs = existing !== undefined ? PORT_RELEASE_GRACE_MS : 0;
  if (!(await waitForFreePort(spec.port, graceMs))) throw new PortInUseError(spec.name, spec.port, spec.portHint);

  spec.beforeSpawn?.();
  const offset = fileSize(paths.logFile);
  const logFd = fs.openSync(paths.logFile, 'a');
  fs.writeSync(logFd, `--- ${new Date().toISOString()} ${spec.command} ${spec.args.join(' ')}\n`);
  let exit: string | undefined;
  const child = spawn(spec.command, [...spec.args], {
    cwd: paths.dir,
    detached: spec.detached ?? true,
    stdio: ['ignore', logFd, logFd],
    env: { ...process.env, ...spec.env },
  });
  fs.closeSync(logFd);
  child.once('exit', (code, signal) => {
    exit = signal === null ? `exit code ${code ?? '?'}` : `signal ${signal}`;
  });
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
  } catch (error) {
    throw fail('exited', `cannot run ${spec.command}: ${(error as Error).message}`, offset, error);
  }
  const pid = child.pid ?? 0;
  child.unref();
  writePidRecord(paths.pidFile, {
    pid,
    command: spec.command,
    port: spec.port,
    ownerPid: process.pid,
    startedAt: new Date().toISOString(),
  });

  const abandon = async (): Promise<void> => {
    if (exit === undefined) await terminate(spec.name, pid, 2_000).catch(() => undefined);
    removePidFile(paths.pidFile);
  };
  const up = await waitForPort(spec.port, timeoutMs, { abort: () => exit !== undefined });
  const exitedEarly = exit;
  if (!up || exitedEarly !== undefined) {
    await abandon();
    if (exitedEarly !== undefined) {
      throw fail('exited', `process ${pid} ended (${exitedEarly}) before it was ready`, offset);
    }
    throw fail('timeout', `port ${spec.port} did not accept connections within ${timeoutMs} ms`, offset);
  }
  if (spec.ready) {
    try {
      await spec.ready(spec.port, Math.max(0, deadline - Date.now()));
    } catch (error) {
      await abandon();
      throw fail('not-ready', `readiness check failed: ${(error as Error).message}`, offset, error);
    }
  }
  return {
    state: 'started',
    name: spec.name,
    pid,
    port: spec.port,
    logFile: paths.logFile,
    message: `${spec.name} started (pid ${pid}, port ${spec.port}, log ${paths.logFile})`,
  };
}

/** Stops the service; not running is success. Throws ServiceStopError if it survives SIGKILL. */
export async function stopService(ref: ServiceRef): Promise<ServiceStopResult> {
  const { pidFile } = servicePaths(ref.stateDir, ref.name);
  const record = readPidRecord(pidFile);
  if (record === undefined || !isRecordAlive(record)) {
    removePidFile(pidFile);
    return { state: 'not-running', name: ref.name, message: `${ref.name} is not running` };
  }
  const graceMs = ref.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  const how = await terminate(ref.name, record.pid, graceMs);
  removePidFile(pidFile);
  const message =
    how === 'stopped'
      ? `${ref.name} stopped (pid ${record.pid})`
      : `${ref.name} ignored SIGTERM for ${graceMs} ms and was killed (pid ${record.pid})`;
  return { state: how, name: ref.name, message };
}

/** Pid and port of the service if it is running, else undefined. */
export function serviceStatus(ref: ServiceRef): { pid: number; port: number } | undefined {
  const record = readPidRecord(servicePaths(ref.stateDir, ref.name).pidFile);
  return record !== undefined && isRecordAlive(record) ? { pid: record.pid, port: record.port } : undefined;
}

/**
 * Sends `signal` to the running service (fault injection: SIGKILL a crash, SIGSTOP a hang).
 * Returns the pid signalled, or undefined when the service is not running.
 */
export function signalService(ref: ServiceRef, signal: NodeJS.Signals): number | undefined {
  const status = serviceStatus(ref);
  if (status === undefined) return undefined;
  sendSignal(status.pid, signal);
  return status.pid;
}
