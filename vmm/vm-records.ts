/**
 * The simulated driver's on-disk state: one JSON record per VM under
 * `<stateDir>/hosts/<hostId>/vms/<vmId>.json`, beside the VM's socket and log. Records outlive
 * the host agent; a record counts only while its process is alive, which is checked against
 * /proc (the pid must still run this VM's VMM, so a reused pid is not mistaken for it).
 *
 * Every path is built from the VM id under the host's folder and refused if it would leave it
 * (store/safe-path.ts): an id of `../` segments cannot name, read or delete a file elsewhere.
 * Records are written 0600 in a folder created 0700.
 */
import { createHash } from 'node:crypto';
import { readFileSync, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makePrivateDir, pathUnder, PRIVATE_FILE_MODE } from '../store/safe-path';
import type { VmmMode } from './vmm-args';
import type { Workload } from './workload';
import type { VmDriverName } from './vm-spec';

/**
 * What the driver knows of a VM on its host. `workload` is the one it was created with (it may
 * have been changed since through the VMM); `createdAt` is an ISO 8601 timestamp.
 */
export interface VmRecord {
  vmId: string;
  hostId: string;
  pid: number;
  socketPath: string;
  pageCount: number;
  memoryBytes: number;
  mode: VmmMode;
  workload: Workload;
  createdAt: string;
  /** Which hypervisor runs it; absent in records written before there were two (simulated). */
  driver?: VmDriverName;
  /** A QEMU VM's guest image (infra/qemu guest-image.ts key): its destination starts the same. */
  guestImageKey?: string;
}

/** Where a VM's files live. */
export interface VmPaths {
  record: string;
  socket: string;
  log: string;
}

/** Longest Unix socket path Linux accepts (bytes, without the terminating NUL). */
const MAX_SOCKET_PATH_BYTES = 107;

/** Reads and writes the VM records of one host's directory. */
export class VmRecordStore {
  /** `dir` is `<stateDir>/hosts/<hostId>/vms`. */
  constructor(readonly dir: string) {}

  /**
   * Paths of a VM's record, socket and log, each inside `dir`. A socket path too long for Linux
   * (over 107 bytes, from a deep state directory) moves to the temp directory under a name derived
   * from it. Throws PathEscapeError for an id whose files would lie outside `dir`.
   */
  paths(vmId: string): VmPaths {
    const inside = (suffix: string): string => pathUnder(this.dir, `${vmId}${suffix}`, 'vmId');
    const record = inside('.json');
    const log = inside('.log');
    let socket = inside('.sock');
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH_BYTES) {
      const digest = createHash('sha256').update(socket).digest('hex').slice(0, 16);
      socket = path.join(os.tmpdir(), `ferry-vmm-${digest}.sock`);
    }
    return { record, socket, log };
  }

  /**
   * The record of `vmId`, or undefined if there is none (or it is unreadable JSON). Throws
   * PathEscapeError for an id that would climb out of `dir`.
   */
  async read(vmId: string): Promise<VmRecord | undefined> {
    const file = this.paths(vmId).record;
    try {
      return JSON.parse(await fs.readFile(file, 'utf8')) as VmRecord;
    } catch {
      return undefined;
    }
  }

  /** Writes a record atomically (temp file, then rename), creating the directory if needed. */
  async write(record: VmRecord): Promise<void> {
    const target = this.paths(record.vmId).record;
    await makePrivateDir(this.dir);
    const temp = `${target}.${process.pid}.tmp`;
    await fs.writeFile(temp, `${JSON.stringify(record, null, 2)}\n`, { mode: PRIVATE_FILE_MODE });
    await fs.chmod(temp, PRIVATE_FILE_MODE);
    await fs.rename(temp, target);
  }

  /**
   * Takes the host-wide right to create `vmId` (an exclusive `<vmId>.creating` file holding this
   * process's pid) and resolves with its release; resolves undefined if a live process holds it.
   * A file left by a dead process is taken over. Exclusive across processes and driver instances.
   */
  async lockCreation(vmId: string): Promise<(() => Promise<void>) | undefined> {
    await fs.mkdir(this.dir, { recursive: true });
    const lockPath = `${path.join(this.dir, vmId)}.creating`;
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        await fs.writeFile(lockPath, `${process.pid}\n`, { flag: 'wx' });
        return () => fs.rm(lockPath, { force: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number((await fs.readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && pidExists(holder)) return undefined;
      // The creator died mid-creation: its claim is void. A racing taker of the same stale file
      // loses at the exclusive create above.
      await fs.rm(lockPath, { force: true });
    }
    return undefined;
  }

  /** Removes a VM's record and socket file (its log stays, for post-mortems). */
  async remove(vmId: string): Promise<void> {
    const paths = this.paths(vmId);
    await fs.rm(paths.record, { force: true });
    await fs.rm(paths.socket, { force: true });
  }

  /** Removes only a VM's record (its socket may belong to a live process). */
  async removeRecord(vmId: string): Promise<void> {
    await fs.rm(this.paths(vmId).record, { force: true });
  }

  /** Ids of every VM with a record, live or not. */
  async list(): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch {
      return [];
    }
    return names.filter((name) => name.endsWith('.json')).map((name) => name.slice(0, -'.json'.length));
  }
}

/**
 * True if `pid` is a live VMM process of `vmId`. On Linux it reads /proc/<pid>/cmdline (empty for
 * a zombie, so an exited but unreaped VMM counts as dead); elsewhere it can only ask whether the
 * pid exists.
 */
export function isVmmAlive(pid: number, vmId: string): boolean {
  let cmdline: string[];
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !procMounted()) return pidExists(pid);
    return false;
  }
  const script = cmdline.findIndex((arg) => arg.endsWith('vmm-process.js'));
  const idFlag = cmdline.indexOf('--vm-id');
  return script >= 0 && idFlag >= 0 && cmdline[idFlag + 1] === vmId;
}

/** Resolves true once the VMM `pid` of `vmId` is gone (polling every 20 ms), false after `timeoutMs`. */
export async function waitForVmmExit(pid: number, vmId: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isVmmAlive(pid, vmId)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

function procMounted(): boolean {
  try {
    readFileSync('/proc/self/cmdline');
    return true;
  } catch {
    return false;
  }
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
