/**
 * The files a managed service keeps in its folder of the state directory: a pid record (JSON, so
 * that a stale pid reused by an unrelated process is not mistaken for the service) and a log.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Lines of log quoted in start errors. */
export const DEFAULT_LOG_TAIL_LINES = 30;

/** What `<name>.pid` records about a running service. */
export interface PidRecord {
  pid: number;
  /** Executable the service was started with; matched against /proc/<pid>/cmdline. */
  command: string;
  port: number;
  /** Process that started the service; test disposables whose owner died are swept. */
  ownerPid: number;
  startedAt: string;
}

/** Paths of one service's files: `<stateDir>/<name>/<name>.{pid,log}`. */
export interface ServicePaths {
  dir: string;
  pidFile: string;
  logFile: string;
}

/** Paths of service `name`'s files under `stateDir`. */
export function servicePaths(stateDir: string, name: string): ServicePaths {
  const dir = path.join(path.resolve(stateDir), name);
  return { dir, pidFile: path.join(dir, `${name}.pid`), logFile: path.join(dir, `${name}.log`) };
}

/** The pid record at `pidFile`, or undefined when it is missing or unreadable. */
export function readPidRecord(pidFile: string): PidRecord | undefined {
  try {
    const parsed = JSON.parse(fs.readFileSync(pidFile, 'utf8')) as Partial<PidRecord>;
    if (typeof parsed.pid !== 'number' || typeof parsed.command !== 'string') return undefined;
    return {
      pid: parsed.pid,
      command: parsed.command,
      port: typeof parsed.port === 'number' ? parsed.port : 0,
      ownerPid: typeof parsed.ownerPid === 'number' ? parsed.ownerPid : 0,
      startedAt: typeof parsed.startedAt === 'string' ? parsed.startedAt : '',
    };
  } catch {
    return undefined;
  }
}

/** Writes `record` to `pidFile` atomically (rename), so a reader never sees half a record. */
export function writePidRecord(pidFile: string, record: PidRecord): void {
  const tmp = `${pidFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(record)}\n`);
  fs.renameSync(tmp, pidFile);
}

/** Removes `pidFile`; a missing file is fine. */
export function removePidFile(pidFile: string): void {
  fs.rmSync(pidFile, { force: true });
}

/**
 * Whether `error`, from reading a /proc/<pid> file or signalling `pid`, says the process is gone:
 * ENOENT (its /proc entry was removed) or ESRCH (no such process; also what a read of a /proc file
 * gives when the process was reaped after the file was opened).
 */
export function isProcessGoneError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
}

/**
 * Whether process `pid` still exists in a way that matters: not yet a zombie, or a zombie leader
 * whose other threads are still exiting (a multi-threaded server such as nats-server keeps its
 * sockets, and so its port, until the last thread is gone). A zombie answers `kill(pid, 0)` too,
 * and a service started by this very process stays one until Node reaps it.
 */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  let status: string;
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch (error) {
    // Vanished between the kill and the read, or while reading: gone.
    return !isProcessGoneError(error);
  }
  const state = /^State:\s+(\S)/m.exec(status)?.[1];
  const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? '1');
  return !((state === 'Z' || state === 'X') && threads <= 1);
}

/** Polls until process `pid` is gone (or a zombie); false if it still runs after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

/**
 * Whether the process in `record` is alive and still runs `record.command` (where /proc exists),
 * so that a recycled pid is not taken for the service. A process in the middle of exiting counts
 * as alive until it is a zombie: its port is not free yet.
 */
export function isRecordAlive(record: PidRecord): boolean {
  if (!isProcessAlive(record.pid)) return false;
  try {
    const argv0 = fs.readFileSync(`/proc/${record.pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
    // An exiting process has an empty cmdline while it still holds its sockets: count it alive.
    if (argv0 === '') return true;
    return argv0 === record.command || path.basename(argv0) === path.basename(record.command);
  } catch (error) {
    // Gone since the check above: not alive. Anything else (no permission): assume it is.
    return !isProcessGoneError(error);
  }
}

/** Size of `file` in bytes, 0 when missing: the offset from which a new start's log begins. */
export function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}

/** The last `lines` lines of `file` written after byte `fromOffset` (at most 64 KiB are read). */
export function logTail(file: string, fromOffset = 0, lines = DEFAULT_LOG_TAIL_LINES): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const size = fs.fstatSync(fd).size;
    const start = Math.max(fromOffset, size - 64 * 1024);
    const buffer = Buffer.alloc(Math.max(0, size - start));
    fs.readSync(fd, buffer, 0, buffer.length, start);
    return buffer
      .toString('utf8')
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
