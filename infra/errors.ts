/**
 * Errors raised while bringing services up and down. Each names the service, binary or port it is
 * about and says what to do; the low-level error, when there is one, is attached as `cause`.
 * Under Jest, recognise them by `name`.
 */

/** A service binary is neither in the project's tools venv nor on PATH. */
export class BinaryNotFoundError extends Error {
  override readonly name = 'BinaryNotFoundError';
  /** The binary that was looked for, e.g. `nats-server`. */
  readonly binary: string;
  /** Every path that was tried, in order. */
  readonly searched: readonly string[];

  constructor(binary: string, searched: readonly string[], options?: { cause?: unknown }) {
    super(
      `service binary not found [binary=${binary}]: not in the tools venv nor on PATH; ` +
        'run `npm run setup` to install the pinned service binaries',
      options,
    );
    this.binary = binary;
    this.searched = searched;
  }
}

/** The port a service should listen on is already taken by a process that is not that service. */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
  readonly service: string;
  readonly port: number;

  /** `hint` is appended to the message, e.g. which environment variable picks another port. */
  constructor(service: string, port: number, hint?: string, options?: { cause?: unknown }) {
    super(
      `cannot start ${service} [port=${port}]: port ${port} on 127.0.0.1 is already in use by another process; ` +
        `stop that process or choose another port${hint ? ` (${hint})` : ''}`,
      options,
    );
    this.service = service;
    this.port = port;
  }
}

/** Why a service failed to start: it exited, its port never opened, or its readiness check failed. */
export type ServiceStartFailure = 'exited' | 'timeout' | 'not-ready';

/** A service was launched but did not become ready; the message carries the tail of its log. */
export class ServiceStartError extends Error {
  override readonly name = 'ServiceStartError';
  readonly service: string;
  readonly port: number;
  readonly reason: ServiceStartFailure;
  /** Full log of the service, for more than the tail quoted in the message. */
  readonly logFile: string;

  constructor(
    service: string,
    port: number,
    reason: ServiceStartFailure,
    detail: string,
    logFile: string,
    logTail: string,
    options?: { cause?: unknown },
  ) {
    const tail = logTail.trim() === '' ? '(log is empty)' : logTail.trimEnd();
    super(`${service} failed to start [port=${port}]: ${detail}; log ${logFile} ends with:\n${tail}`, options);
    this.service = service;
    this.port = port;
    this.reason = reason;
    this.logFile = logFile;
  }
}

/** A service process survived SIGKILL (or could not be signalled at all). */
export class ServiceStopError extends Error {
  override readonly name = 'ServiceStopError';
  readonly service: string;
  readonly pid: number;

  constructor(service: string, pid: number, detail: string, options?: { cause?: unknown }) {
    super(`could not stop ${service} [pid=${pid}]: ${detail}`, options);
    this.service = service;
    this.pid = pid;
  }
}

/** A test network could not be set up or torn down: not root, no `ip netns`, or an ip command failed. */
export class NetworkNamespaceError extends Error {
  override readonly name = 'NetworkNamespaceError';
}
