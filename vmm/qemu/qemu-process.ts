/**
 * One QEMU process running one guest of ferry's QEMU driver. Guest RAM lives in a file under a
 * ferry-owned folder of /dev/shm (mode 0700, checked to be ours), shared with QEMU
 * (`memory-backend-file,share=on`), so a page engine can read and write it while the guest runs.
 * QEMU listens on nothing but unix sockets in the caller's state dir (QMP), has no network card and
 * no display, and writes the serial console to `<stateDir>/serial.log`, which is followed and
 * parsed into the guest program's messages (see guest-console.ts).
 *
 * A destination is started with `incoming: true`: `-incoming defer -S`, so it waits for
 * `migrate-incoming` and, with `-S`, stays paused after the device state arrived until someone
 * runs `cont` (ferry does so only after taking ownership).
 *
 * QEMU runs in a process group of its own, so it survives the death of the process that launched
 * it (as a VM survives a libvirtd restart). destroy() quits it, waits, and removes the RAM file.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validateId } from '../../model/ids';
import { EventChannel, type WaitOptions } from './event-channel';
import { QemuProcessError } from './errors';
import { FileTail } from './file-tail';
import { type GuestConsoleMessage, type GuestHeartbeat, parseGuestConsoleLine } from './guest-console';
import { qemuArgs, type QemuProcessOptions } from './qemu-command-line';
import { QmpClient, type QmpEvent } from './qmp-client';
import { createRamFile, defaultShmDir } from './ram-file';

/** The QEMU binary looked up on PATH. */
export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';
/** util-linux's setpriv, which sets the parent-death signal before it execs QEMU. */
export const SETPRIV_BINARY = '/usr/bin/setpriv';
/** How long launch() waits for QEMU's QMP socket to answer, in milliseconds. */
export const DEFAULT_QEMU_START_TIMEOUT_MS = 15_000;
/** How long destroy() waits after `quit` before SIGKILL, in milliseconds. */
export const DEFAULT_QEMU_STOP_GRACE_MS = 3_000;
/** Console lines kept for error messages. */
const CONSOLE_TAIL_LINES = 40;
/** Longest unix socket path Linux accepts (sun_path is 108 bytes with its NUL). */
const MAX_UNIX_SOCKET_PATH = 107;

function logTail(logFile: string): string {
  try {
    return fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join(' | ') || '(empty log)';
  } catch {
    return '(no log)';
  }
}

/** How a QEMU process ended. */
export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running QEMU; see the module header. */
export class QemuProcess {
  /** The guest program's console messages, parsed. */
  readonly console = new EventChannel<GuestConsoleMessage>();
  /** The last heartbeat seen, if any. */
  lastHeartbeat: GuestHeartbeat | undefined;
  /** Resolves when QEMU has exited. */
  readonly exited: Promise<QemuExit>;
  private readonly consoleTail: string[] = [];
  private readonly tail: FileTail;
  private exit: QemuExit | undefined;
  private destroyed = false;

  private constructor(
    readonly vmId: string,
    /** The guest RAM file (size memoryMib MiB). */
    readonly ramPath: string,
    /** Folder of this QEMU's sockets and logs. */
    readonly stateDir: string,
    /** QEMU's stdout and stderr. */
    readonly logFile: string,
    private readonly child: ChildProcess,
    /** The QMP session, negotiated. */
    public qmp: QmpClient,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        this.tail.poke();
        // A guest that panicked or powered off makes QEMU exit: waiters learn it now, not at their timeout.
        this.console.close(
          new QemuProcessError(
            vmId,
            'exited',
            `QEMU exited with ${code ?? signal}; last console lines: ${this.consoleTail.slice(-5).join(' | ')}`,
            logFile,
          ),
        );
        resolve(this.exit);
      });
    });
    this.tail = new FileTail(path.join(stateDir, 'serial.log'), (line) => this.onConsoleLine(line));
  }

  /** QEMU's process id. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Path of the guest's serial console log. */
  get serialLogPath(): string {
    return path.join(this.stateDir, 'serial.log');
  }

  /** Path of the QMP socket. */
  get qmpSocketPath(): string {
    return path.join(this.stateDir, 'qmp.sock');
  }

  /** The last console lines (kernel and guest program), for diagnostics. */
  recentConsole(): string[] {
    return [...this.consoleTail];
  }

  /**
   * Starts QEMU and connects to its QMP socket. The RAM file is created (0600, sized) before QEMU
   * starts. Throws QemuProcessError when the RAM folder is not ours, QEMU cannot be spawned, exits,
   * or does not answer QMP within the start timeout; nothing is left behind then.
   */
  static async launch(options: QemuProcessOptions): Promise<QemuProcess> {
    const vmId = validateId('vmId', options.vmId);
    if (!Number.isSafeInteger(options.memoryMib) || options.memoryMib < 16)
      throw new Error(`memoryMib must be an integer of at least 16, got ${options.memoryMib}`);
    const stateDir = path.resolve(options.stateDir);
    const logFile = path.join(stateDir, 'qemu.log');
    const qmpSocket = path.join(stateDir, 'qmp.sock');
    if (qmpSocket.length > MAX_UNIX_SOCKET_PATH)
      throw new Error(
        `stateDir is too long for a unix socket path (${qmpSocket.length} > ${MAX_UNIX_SOCKET_PATH}): ${stateDir}`,
      );
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    for (const stale of ['qmp.sock', 'serial.log', 'qemu.pid']) fs.rmSync(path.join(stateDir, stale), { force: true });

    const ramPath = createRamFile(path.resolve(options.shmDir ?? defaultShmDir()), vmId, options.memoryMib, logFile);

    const logFd = fs.openSync(logFile, 'w', 0o600);
    let child: ChildProcess;
    try {
      const qemu = [options.qemuBinary ?? DEFAULT_QEMU_BINARY, ...qemuArgs({ ...options, stateDir }, ramPath)];
      // QEMU dies with the process that started it (PR_SET_PDEATHSIG through setpriv, which then
      // execs QEMU under the same pid): a VMM that crashed must not leave its guest running
      // unowned beside the copy a migration may resume elsewhere.
      const command = fs.existsSync(SETPRIV_BINARY) ? [SETPRIV_BINARY, '--pdeathsig', 'KILL', ...qemu] : qemu;
      child = spawn(command[0] as string, command.slice(1), {
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
    } catch (error) {
      fs.rmSync(ramPath, { force: true });
      throw new QemuProcessError(vmId, 'spawn', (error as Error).message, logFile, { cause: error });
    } finally {
      fs.closeSync(logFd);
    }
    child.unref();
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const exited = new Promise<QemuExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

    const deadline = Date.now() + (options.startTimeoutMs ?? DEFAULT_QEMU_START_TIMEOUT_MS);
    let failure: QemuProcessError | undefined;
    let qmp: QmpClient | undefined;
    while (qmp === undefined && failure === undefined) {
      const outcome = await Promise.race([
        exited.then((e) => ({ kind: 'exited' as const, e })),
        spawnError.then((e) => ({ kind: 'error' as const, e })),
        QmpClient.connect(qmpSocket).then(
          (c) => ({ kind: 'qmp' as const, c }),
          // The socket appears only once QEMU has parsed its options: retry shortly.
          () => new Promise<{ kind: 'retry' }>((resolve) => setTimeout(() => resolve({ kind: 'retry' }), 20)),
        ),
      ]);
      if (outcome.kind === 'qmp') qmp = outcome.c;
      else if (outcome.kind === 'exited')
        failure = new QemuProcessError(
          vmId,
          'exited',
          `exited with ${outcome.e.code ?? outcome.e.signal} while starting: ${logTail(logFile)}`,
          logFile,
        );
      else if (outcome.kind === 'error')
        failure = new QemuProcessError(vmId, 'spawn', outcome.e.message, logFile, { cause: outcome.e });
      else if (Date.now() > deadline)
        failure = new QemuProcessError(
          vmId,
          'start-timeout',
          `QMP did not answer on ${qmpSocket}: ${logTail(logFile)}`,
          logFile,
        );
    }
    if (qmp === undefined) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      fs.rmSync(ramPath, { force: true });
      throw failure;
    }
    return new QemuProcess(vmId, ramPath, stateDir, logFile, child, qmp);
  }

  private onConsoleLine(line: string): void {
    this.consoleTail.push(line);
    if (this.consoleTail.length > CONSOLE_TAIL_LINES) this.consoleTail.shift();
    const message = parseGuestConsoleLine(line);
    if (message === undefined) return;
    if (message.type === 'heartbeat') this.lastHeartbeat = message;
    this.console.emit(message);
  }

  /**
   * Reads the console log up to its end now. After a STOP event every line the guest wrote is in
   * the file, so lastHeartbeat is then the guest's last heartbeat.
   */
  flushConsole(): void {
    this.tail.poke();
  }

  /** The next heartbeat for which `predicate` holds (any when omitted); see EventChannel.next. */
  waitForHeartbeat(
    predicate: (hb: GuestHeartbeat) => boolean = () => true,
    options: WaitOptions & { description?: string } = {},
  ): Promise<GuestHeartbeat> {
    return this.console.next(
      `heartbeat of VM ${this.vmId}${options.description ? ` (${options.description})` : ''}`,
      (m) => m.type === 'heartbeat' && predicate(m),
      options,
    ) as Promise<GuestHeartbeat>;
  }

  /** Every heartbeat from now on, until destroy(). */
  async *heartbeats(): AsyncGenerator<GuestHeartbeat> {
    for await (const message of this.console.stream()) if (message.type === 'heartbeat') yield message;
  }

  /** QEMU's run state (`query-status`): e.g. `running`, `paused`, `inmigrate`, `postmigrate`. */
  async status(): Promise<{ running: boolean; status: string }> {
    return this.qmp.execute<{ running: boolean; status: string }>('query-status');
  }

  /** Pauses the vCPU (QMP `stop`) and returns QEMU's STOP event; undefined if it was not running. */
  async stop(options: WaitOptions = {}): Promise<QmpEvent | undefined> {
    if (!(await this.status()).running) return undefined;
    const stopped = this.qmp.waitForEvent('STOP', undefined, options);
    await this.qmp.execute('stop');
    return stopped;
  }

  /** Resumes the vCPU (QMP `cont`) and returns QEMU's RESUME event; undefined if it was running. */
  async cont(options: WaitOptions = {}): Promise<QmpEvent | undefined> {
    if ((await this.status()).running) return undefined;
    const resumed = this.qmp.waitForEvent('RESUME', undefined, options);
    await this.qmp.execute('cont');
    return resumed;
  }

  /** SIGKILLs QEMU (as a crash would) and waits for it to exit; the RAM file stays until destroy(). */
  async kill(): Promise<QemuExit> {
    if (this.exit === undefined) process.kill(this.pid, 'SIGKILL');
    return this.exited;
  }

  /**
   * Quits QEMU (QMP `quit`, then SIGKILL after `graceMs`), stops following the console and removes
   * the RAM file. Idempotent; never throws for a QEMU that is already gone.
   */
  async destroy(graceMs = DEFAULT_QEMU_STOP_GRACE_MS): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.exit === undefined) {
      await this.qmp.execute('quit').catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      const gone = await Promise.race([
        this.exited.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
      ]);
      clearTimeout(timer);
      if (!gone) await this.kill();
    }
    await this.qmp.close().catch(() => undefined);
    this.tail.stop();
    this.console.close(new QemuProcessError(this.vmId, 'exited', 'the QEMU process was destroyed', this.logFile));
    fs.rmSync(this.ramPath, { force: true });
  }
}
