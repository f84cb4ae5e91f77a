/**
 * Errors of the QEMU driver: QMP commands QEMU refused, a QMP connection that failed or closed, a
 * wait that ran out of time, and a QEMU process that could not start or died. Each names the VM,
 * socket or command it is about; the low-level error, when there is one, is attached as `cause`.
 * Under Jest, recognise them by `name`.
 */

/** QEMU answered a QMP command with an error. */
export class QmpCommandError extends Error {
  override readonly name = 'QmpCommandError';
  /** The command sent, e.g. `migrate-incoming`. */
  readonly command: string;
  /** QEMU's error class, e.g. `GenericError`, `CommandNotFound`, `DeviceNotFound`. */
  readonly errorClass: string;
  /** QEMU's description of the error. */
  readonly desc: string;

  constructor(command: string, errorClass: string, desc: string, options?: { cause?: unknown }) {
    super(`QMP command failed [command=${command}, class=${errorClass}]: ${desc}`, options);
    this.command = command;
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/** The QMP socket could not be reached, spoke something else than QMP, or closed with work pending. */
export class QmpConnectionError extends Error {
  override readonly name = 'QmpConnectionError';
  /** The QMP unix socket. */
  readonly socketPath: string;

  constructor(socketPath: string, detail: string, options?: { cause?: unknown }) {
    super(`QMP connection failed [socket=${socketPath}]: ${detail}`, options);
    this.socketPath = socketPath;
  }
}

/** A wait for a QMP event, a QMP reply or a guest heartbeat ran out of time. */
export class QemuTimeoutError extends Error {
  override readonly name = 'QemuTimeoutError';
  /** What was waited for, e.g. `QMP event MIGRATION (status=completed)`. */
  readonly waitedFor: string;
  readonly timeoutMs: number;

  constructor(waitedFor: string, timeoutMs: number, options?: { cause?: unknown }) {
    super(`timed out after ${timeoutMs} ms waiting for ${waitedFor}`, options);
    this.waitedFor = waitedFor;
    this.timeoutMs = timeoutMs;
  }
}

/** Why a QEMU process failed: it could not be started, exited, or its files could not be set up. */
export type QemuProcessFailure = 'spawn' | 'exited' | 'start-timeout' | 'ram-file';

/** A QEMU process failed to start or died; the message quotes the tail of its log. */
export class QemuProcessError extends Error {
  override readonly name = 'QemuProcessError';
  readonly vmId: string;
  readonly reason: QemuProcessFailure;
  /** QEMU's own stdout and stderr, for more than the tail quoted in the message. */
  readonly logFile: string;

  constructor(
    vmId: string,
    reason: QemuProcessFailure,
    detail: string,
    logFile: string,
    options?: { cause?: unknown },
  ) {
    super(`QEMU ${reason} [vm=${vmId}]: ${detail} (log: ${logFile})`, options);
    this.vmId = vmId;
    this.reason = reason;
    this.logFile = logFile;
  }
}

/** The cgroup throttle of a QEMU guest's vCPU could not be set up (its cgroup was left removed). */
export class QemuThrottleError extends Error {
  override readonly name = 'QemuThrottleError';
  readonly vmId: string;
  /** The cgroup directory it tried to use. */
  readonly cgroupDir: string;

  constructor(vmId: string, cgroupDir: string, detail: string, options?: { cause?: unknown }) {
    super(`vCPU throttle failed [vm=${vmId}, cgroup=${cgroupDir}]: ${detail}`, options);
    this.vmId = vmId;
    this.cgroupDir = cgroupDir;
  }
}
