/**
 * A QMP (QEMU Machine Protocol) client over a unix socket. connect() reads QEMU's greeting and
 * negotiates capabilities (`qmp_capabilities`); execute() sends one command with an `id` and
 * resolves with its `return` value or rejects with QmpCommandError (QEMU's error class and
 * description); asynchronous events arrive on `events` with QEMU's own timestamp, so two QEMUs on
 * one host can be compared (e.g. downtime from the source's STOP to the destination's RESUME).
 *
 * Commands may be pipelined; replies are matched by id. When the socket closes, pending commands
 * and event waiters reject with QmpConnectionError. Nothing is retried: a command that fails with
 * the connection may or may not have run in QEMU.
 */
import * as net from 'node:net';
import { EventChannel, type WaitOptions } from './event-channel';
import { QmpCommandError, QmpConnectionError, QemuTimeoutError } from './errors';

/** Default time connect() waits for the greeting and the capabilities reply, in milliseconds. */
export const DEFAULT_QMP_CONNECT_TIMEOUT_MS = 5_000;

/** An asynchronous QMP event. */
export interface QmpEvent {
  /** The event's name, e.g. `STOP`, `RESUME`, `MIGRATION`, `SHUTDOWN`. */
  event: string;
  /** The event's data (an empty object when QEMU sent none). */
  data: Record<string, unknown>;
  /** QEMU's wall-clock time of the event, as QEMU sent it. */
  timestamp: { seconds: number; microseconds: number };
  /** The same time in microseconds since the Unix epoch. */
  timestampUs: number;
}

/** QEMU's version from the greeting. */
export interface QmpVersion {
  major: number;
  minor: number;
  micro: number;
  /** The distribution's suffix, e.g. `Debian 1:7.2+dfsg-7+deb12u18`. */
  package: string;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

type QmpMessage = {
  QMP?: { version?: { qemu?: { major: number; minor: number; micro: number }; package?: string } };
  return?: unknown;
  error?: { class?: string; desc?: string };
  event?: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
  id?: number;
};

/** A negotiated QMP session; see the module header. */
export class QmpClient {
  /** Every QMP event, in arrival order. Waiters see only events emitted after they were created. */
  readonly events = new EventChannel<QmpEvent>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buffer = '';
  private greetingWaiter: ((message: QmpMessage) => void) | undefined;
  private closeError: QmpConnectionError | undefined;
  private readonly closedPromise: Promise<void>;

  private constructor(
    /** The unix socket this client is connected to. */
    readonly socketPath: string,
    private readonly socket: net.Socket,
    /** QEMU's version, filled in by connect(). */
    public version: QmpVersion = { major: 0, minor: 0, micro: 0, package: '' },
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    this.closedPromise = new Promise((resolve) => {
      socket.on('close', () => {
        this.fail(new QmpConnectionError(socketPath, 'the connection closed'));
        resolve();
      });
    });
    socket.on('error', (error) => this.fail(new QmpConnectionError(socketPath, error.message, { cause: error })));
  }

  /**
   * Connects to QEMU's QMP socket, reads the greeting and leaves capabilities negotiation mode.
   * Throws QmpConnectionError when the socket cannot be reached or does not speak QMP, and
   * QemuTimeoutError when QEMU does not answer within `timeoutMs`.
   */
  static async connect(socketPath: string, options: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_QMP_CONNECT_TIMEOUT_MS;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({ path: socketPath });
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (error) => reject(new QmpConnectionError(socketPath, error.message, { cause: error })));
    });
    const client = new QmpClient(socketPath, socket);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        (async () => {
          const greeting = await client.greeting();
          const qemu = greeting.QMP?.version?.qemu;
          client.version = {
            major: qemu?.major ?? 0,
            minor: qemu?.minor ?? 0,
            micro: qemu?.micro ?? 0,
            package: greeting.QMP?.version?.package ?? '',
          };
          await client.execute('qmp_capabilities');
        })(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new QemuTimeoutError(`QMP greeting on ${socketPath}`, timeoutMs)), timeoutMs);
        }),
      ]);
    } catch (error) {
      client.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  private greeting(): Promise<QmpMessage> {
    return new Promise((resolve, reject) => {
      if (this.closeError) return reject(this.closeError);
      this.greetingWaiter = (message) => {
        if (message.QMP === undefined)
          reject(new QmpConnectionError(this.socketPath, 'no QMP greeting: not a QMP socket'));
        else resolve(message);
      };
      this.pending.set(0, { command: '(greeting)', resolve: () => undefined, reject });
    });
  }

  /**
   * Runs `command` with `args` and resolves with QEMU's `return` value (typed by the caller).
   * Throws QmpCommandError when QEMU answers with an error, QmpConnectionError when the connection
   * is or gets closed before the reply.
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closeError) return Promise.reject(this.closeError);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject });
      this.socket.write(
        `${JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id })}\n`,
      );
    });
  }

  /**
   * The next event named `event` for which `predicate` holds (every one when omitted). Create the
   * waiter before the command that causes the event. Rejects with QemuTimeoutError, or with
   * QmpConnectionError when the connection closes first.
   */
  waitForEvent(
    event: string,
    predicate: (e: QmpEvent) => boolean = () => true,
    options: WaitOptions & { description?: string } = {},
  ): Promise<QmpEvent> {
    return this.events.next(
      `QMP event ${options.description ?? event}`,
      (e) => e.event === event && predicate(e),
      options,
    );
  }

  /** Resolves when the socket has closed (by close(), by QEMU exiting, or on an error). */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /** Closes the connection (QEMU keeps running); pending commands reject. Idempotent. */
  async close(): Promise<void> {
    this.socket.end();
    await Promise.race([this.closedPromise, new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
    this.destroy();
  }

  private destroy(): void {
    this.socket.destroy();
    this.fail(new QmpConnectionError(this.socketPath, 'the client closed the connection'));
  }

  private fail(error: QmpConnectionError): void {
    if (this.closeError) return;
    this.closeError = error;
    for (const pending of this.pending.values()) pending.reject(error);
    this.pending.clear();
    this.events.close(error);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line !== '') this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let message: QmpMessage;
    try {
      message = JSON.parse(line) as QmpMessage;
    } catch (error) {
      this.socket.destroy();
      this.fail(new QmpConnectionError(this.socketPath, `not JSON: ${line.slice(0, 200)}`, { cause: error }));
      return;
    }
    if (this.greetingWaiter) {
      const waiter = this.greetingWaiter;
      this.greetingWaiter = undefined;
      this.pending.delete(0);
      waiter(message);
      return;
    }
    if (message.event !== undefined) {
      const ts = message.timestamp ?? { seconds: 0, microseconds: 0 };
      this.events.emit({
        event: message.event,
        data: message.data ?? {},
        timestamp: ts,
        timestampUs: ts.seconds * 1_000_000 + ts.microseconds,
      });
      return;
    }
    const pending = message.id === undefined ? undefined : this.pending.get(message.id);
    if (pending === undefined || message.id === undefined) return;
    this.pending.delete(message.id);
    if (message.error) {
      pending.reject(new QmpCommandError(pending.command, message.error.class ?? 'unknown', message.error.desc ?? ''));
    } else {
      pending.resolve(message.return);
    }
  }
}
