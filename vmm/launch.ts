/**
 * Starts a VMM process detached from its launcher: its own session (setsid), stdout and stderr
 * appended to a log file, not waited for. Restarting or killing the launcher (the host agent)
 * leaves the VM running, as restarting libvirtd leaves QEMU running.
 */
import { spawn } from 'node:child_process';
import { promises as fs, openSync, closeSync } from 'node:fs';
import * as path from 'node:path';
import { VmmLaunchError } from './errors';
import { formatVmmArgs } from './vmm-args';
import type { VmmMode } from './vmm-args';
import type { VmmStatus } from './vmm-methods';
import { VmmClient } from './vmm-client';
import { DEFAULT_FILL_RATIO, DEFAULT_SEED, type VmDriverName } from './vm-spec';
import { DEFAULT_WORKLOAD } from './workload';
import type { Workload } from './workload';

/** How long a VMM may take to answer its first `status` (ms); filling 1 GiB takes about a second. */
export const DEFAULT_LAUNCH_TIMEOUT_MS = 30_000;
/** Interval between probes of the new VMM's socket (ms). */
const PROBE_INTERVAL_MS = 25;
/** Bytes of the log's tail quoted when a launch fails. */
const LOG_TAIL_BYTES = 2_048;

/**
 * A VMM to launch. `seed` defaults to DEFAULT_SEED, `fillRatio` to DEFAULT_FILL_RATIO, `workload`
 * to idle, `timeoutMs` (until it answers `status`) to DEFAULT_LAUNCH_TIMEOUT_MS. Values are
 * validated by the VMM itself, which exits with the reason in its log.
 */
export interface LaunchVmmOptions {
  vmId: string;
  pageCount: number;
  socketPath: string;
  logPath: string;
  mode: VmmMode;
  workload?: Workload;
  seed?: number;
  fillRatio?: number;
  /** Which hypervisor runs the guest; default `simulated`. */
  driver?: VmDriverName;
  /** A QEMU guest's image, built by the host (see VmmProcessOptions.guestImage). */
  guestImage?: { kernelPath: string; initrdPath: string };
  timeoutMs?: number;
  /**
   * Called with the new process's pid as soon as it is spawned, before it serves (so a caller can
   * record it and a crash of the caller during a long fill does not orphan the process). Awaited.
   */
  onSpawn?: (pid: number) => Promise<void> | void;
}

/** Path of the VMM entry point, next to this file in dist/vmm. */
export const VMM_PROCESS_SCRIPT = path.join(__dirname, 'vmm-process.js');

async function logTail(logPath: string): Promise<string> {
  try {
    const text = await fs.readFile(logPath, 'utf8');
    return text.slice(-LOG_TAIL_BYTES).trim();
  } catch {
    return '(no log)';
  }
}

async function probe(socketPath: string, vmId: string): Promise<VmmStatus | undefined> {
  let client: VmmClient | undefined;
  try {
    client = await VmmClient.connect(socketPath, { vmId, timeoutMs: 1_000 });
    return await client.call<VmmStatus>('status', undefined, { timeoutMs: 2_000 });
  } catch {
    return undefined;
  } finally {
    client?.close();
  }
}

/**
 * Spawns a detached VMM and resolves with its pid once it answers `status` on its socket.
 * Throws VmmLaunchError, quoting the log's tail, if the process exits first, if it does not answer
 * within the timeout, if another process answers on the socket or if `onSpawn` throws (in the
 * last three cases the new process is killed).
 */
export async function launchVmm(opts: LaunchVmmOptions): Promise<{ pid: number }> {
  await fs.mkdir(path.dirname(opts.logPath), { recursive: true });
  const args = formatVmmArgs({
    vmId: opts.vmId,
    pageCount: opts.pageCount,
    socketPath: opts.socketPath,
    mode: opts.mode,
    workload: opts.workload ?? DEFAULT_WORKLOAD,
    seed: opts.seed ?? DEFAULT_SEED,
    fillRatio: opts.fillRatio ?? DEFAULT_FILL_RATIO,
    driver: opts.driver ?? 'simulated',
    ...(opts.guestImage ? { guestImage: opts.guestImage } : {}),
  });
  const logFd = openSync(opts.logPath, 'a');
  let child;
  try {
    // FERRY_VMM_NODE_ARGS passes flags to the VMM's Node (e.g. --cpu-prof), which NODE_OPTIONS refuses.
    const nodeArgs = (process.env['FERRY_VMM_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
    child = spawn(process.execPath, [...nodeArgs, VMM_PROCESS_SCRIPT, ...args], {
      detached: true,
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  const pid = child.pid;
  let exit: string | undefined;
  child.once('exit', (code, signal) => {
    exit = signal === null ? `exited with code ${code}` : `killed by ${signal}`;
  });
  child.once('error', (err) => {
    exit = `could not start: ${err.message}`;
  });
  child.unref();
  if (pid !== undefined && exit === undefined && opts.onSpawn !== undefined) {
    try {
      await opts.onSpawn(pid);
    } catch (err) {
      child.kill('SIGKILL');
      throw new VmmLaunchError(opts.vmId, opts.logPath, `onSpawn failed: ${(err as Error).message}`, { cause: err });
    }
  }

  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_LAUNCH_TIMEOUT_MS);
  for (;;) {
    if (exit !== undefined || pid === undefined) {
      const reason = exit ?? 'spawn failed';
      throw new VmmLaunchError(
        opts.vmId,
        opts.logPath,
        `process ${reason} before serving; log tail:\n${await logTail(opts.logPath)}`,
      );
    }
    const status = await probe(opts.socketPath, opts.vmId);
    if (status !== undefined) {
      if (status.pid === pid) return { pid };
      child.kill('SIGKILL');
      throw new VmmLaunchError(
        opts.vmId,
        opts.logPath,
        `socket ${opts.socketPath} is served by another process (pid ${status.pid})`,
      );
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new VmmLaunchError(
        opts.vmId,
        opts.logPath,
        `no answer on ${opts.socketPath} within the launch timeout; log tail:\n${await logTail(opts.logPath)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, PROBE_INTERVAL_MS));
  }
}
