/**
 * Errors of the simulated VMM: its process, its control channel and the hypervisor driver.
 * Recognise them by `name` (Jest may load two copies of this module).
 */

function reasonOf(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}

/** A size string such as "12XB" could not be parsed; `input` is what was given. */
export class InvalidSizeError extends Error {
  override readonly name = 'InvalidSizeError';
  readonly input: string;

  constructor(input: string, reason: string) {
    super(`malformed size ${JSON.stringify(input)}: ${reason}`);
    this.input = input;
  }
}

/** A VM spec (vmId, memoryBytes, workload, seed, fillRatio) is invalid; `option` names the field. */
export class InvalidVmSpecError extends Error {
  override readonly name = 'InvalidVmSpecError';
  readonly option: string;

  constructor(option: string, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.option = option;
  }
}

/**
 * A parameter of a VMM request, of a vCPU call or of the VMM process command line is invalid:
 * "percent must be a number in 0..99, got 150". `option` names the parameter.
 */
export class VmmParamsError extends Error {
  override readonly name = 'VmmParamsError';
  readonly option: string;

  constructor(option: string, message: string) {
    super(message);
    this.option = option;
  }
}

/** The VMM has no method of this name (neither built in nor registered by an extension). */
export class VmmMethodNotFoundError extends Error {
  override readonly name = 'VmmMethodNotFoundError';
  readonly method: string;

  constructor(method: string, vmId: string) {
    super(`unknown VMM method ${JSON.stringify(method)} [vm=${vmId}]`);
    this.method = method;
  }
}

/** The vCPU thread has stopped (by `stop()` or because it crashed); it takes no more commands. */
export class VcpuStoppedError extends Error {
  override readonly name = 'VcpuStoppedError';

  constructor(action: string, opts: { cause?: unknown } = {}) {
    super(`cannot ${action}: the vCPU thread has stopped${opts.cause ? `: ${reasonOf(opts.cause)}` : ''}`, {
      cause: opts.cause,
    });
  }
}

/** The VMM's control socket file exists and a live process answers on it. */
export class SocketInUseError extends Error {
  override readonly name = 'SocketInUseError';
  readonly socketPath: string;

  constructor(socketPath: string) {
    super(`control socket ${socketPath} is in use by another process`);
    this.socketPath = socketPath;
  }
}

/** A VM of this id already exists on the host (running, or incoming with another shape). */
export class VmExistsError extends Error {
  override readonly name = 'VmExistsError';
  readonly vmId: string;
  readonly hostId: string;

  constructor(vmId: string, hostId: string, detail: string) {
    super(`VM already exists [vm=${vmId}, host=${hostId}]: ${detail}`);
    this.vmId = vmId;
    this.hostId = hostId;
  }
}

/** No live VM of this id on the host (no record, or its process is gone). */
export class VmNotFoundError extends Error {
  override readonly name = 'VmNotFoundError';
  readonly vmId: string;
  readonly hostId: string;

  constructor(vmId: string, hostId: string) {
    super(`VM not found [vm=${vmId}, host=${hostId}]: no record or its VMM process is not running`);
    this.vmId = vmId;
    this.hostId = hostId;
  }
}

/** Starting a VMM process failed; the message carries the tail of its log. */
export class VmmLaunchError extends Error {
  override readonly name = 'VmmLaunchError';
  readonly vmId: string;
  readonly logPath: string;

  constructor(vmId: string, logPath: string, reason: string, opts: { cause?: unknown } = {}) {
    super(`VMM launch failed [vm=${vmId}, log=${logPath}]: ${reason}`, { cause: opts.cause });
    this.vmId = vmId;
    this.logPath = logPath;
  }
}

/** The control socket of a VMM could not be reached (no such socket, refused, timed out). */
export class VmmConnectError extends Error {
  override readonly name = 'VmmConnectError';
  readonly socketPath: string;
  readonly vmId: string | undefined;

  constructor(socketPath: string, vmId: string | undefined, cause: unknown) {
    const vm = vmId === undefined ? '' : `vm=${vmId}, `;
    super(`cannot connect to VMM [${vm}socket=${socketPath}]: ${reasonOf(cause)}`, { cause });
    this.socketPath = socketPath;
    this.vmId = vmId;
  }
}

/**
 * A call on a VMM's control channel failed. `kind` says how: `remote` (the VMM's handler threw;
 * `remoteName` and the message carry its error), `timeout` (no answer within the call's timeout;
 * the handler may still be running) or `disconnected` (the connection closed before the answer).
 */
export class VmmCallError extends Error {
  override readonly name = 'VmmCallError';
  readonly method: string;
  readonly vmId: string | undefined;
  readonly kind: 'remote' | 'timeout' | 'disconnected';
  readonly remoteName: string | undefined;
  readonly remoteMessage: string;

  constructor(opts: {
    method: string;
    vmId: string | undefined;
    kind: 'remote' | 'timeout' | 'disconnected';
    remoteName?: string;
    message: string;
    cause?: unknown;
  }) {
    const vm = opts.vmId === undefined ? '' : `vm=${opts.vmId}, `;
    const what = opts.remoteName === undefined ? opts.message : `${opts.remoteName}: ${opts.message}`;
    super(`VMM call failed [${vm}method=${opts.method}]: ${what}`, { cause: opts.cause });
    this.method = opts.method;
    this.vmId = opts.vmId;
    this.kind = opts.kind;
    this.remoteName = opts.remoteName;
    this.remoteMessage = opts.message;
  }
}

/**
 * This VMM does not own its VM, so its guest may not run: ownership moved to a migration's
 * destination, or this is a destination that has not taken its ownership epoch yet.
 */
export class VmmNotOwnerError extends Error {
  override readonly name = 'VmmNotOwnerError';
  readonly vmId: string;

  constructor(vmId: string, action: string) {
    super(
      `cannot ${action} [vm=${vmId}]: this VMM does not own the VM (its ownership moved to a migration's ` +
        'destination, or this destination has not taken ownership yet), so its guest may not run here',
    );
    this.vmId = vmId;
  }
}
