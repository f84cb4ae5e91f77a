/**
 * Client of a VMM's control socket (see vmm-server.ts for the protocol). Calls may overlap on one
 * connection. The connection does not keep the Node event loop alive while no call is pending, so
 * a client that is never closed does not hold a process open; close it anyway when done.
 */
import * as net from 'node:net';
import { VmmCallError, VmmConnectError } from './errors';

/** Time allowed to connect (ms). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Time allowed for a call's answer unless the call says otherwise (ms). */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/**
 * Options of VmmClient.connect. `timeoutMs`: to connect (default DEFAULT_CONNECT_TIMEOUT_MS).
 * `callTimeoutMs`: default timeout of calls (DEFAULT_CALL_TIMEOUT_MS; 0 = none). `vmId`: named in errors.
 */
export interface VmmClientOptions {
  timeoutMs?: number;
  callTimeoutMs?: number;
  vmId?: string;
}

interface PendingCall {
  method: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
}

/** A connection to one VMM's control socket. */
export class VmmClient {
  private readonly socket: net.Socket;
  private readonly vmId: string | undefined;
  private readonly callTimeoutMs: number;
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 1;
  private buffered = '';
  private closed = false;

  private constructor(socket: net.Socket, vmId: string | undefined, callTimeoutMs: number) {
    this.socket = socket;
    this.vmId = vmId;
    this.callTimeoutMs = callTimeoutMs;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
    socket.unref();
  }

  /**
   * Connects to the VMM listening on `socketPath`. Rejects with VmmConnectError if the socket is
   * missing, refuses, or does not connect within `opts.timeoutMs`.
   */
  static connect(socketPath: string, opts: VmmClientOptions = {}): Promise<VmmClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new VmmConnectError(socketPath, opts.vmId, `no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new VmmConnectError(socketPath, opts.vmId, err));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new VmmClient(socket, opts.vmId, opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS));
      });
    });
  }

  /**
   * Calls `method` with `params` and resolves to its result. Rejects with VmmCallError: kind
   * `remote` with the VMM's error name and message, `timeout` after `opts.timeoutMs` (default the
   * client's call timeout; 0 = wait forever) or `disconnected` if the connection closes first.
   */
  call<T = unknown>(method: string, params?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closed) {
      return Promise.reject(this.callError(method, 'disconnected', 'the connection to the VMM is closed'));
    }
    const id = this.nextId;
    this.nextId += 1;
    const timeoutMs = opts.timeoutMs ?? this.callTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              this.settle(id);
              reject(this.callError(method, 'timeout', `no answer within ${timeoutMs} ms`));
            }, timeoutMs)
          : undefined;
      this.pending.set(id, { method, resolve: resolve as (value: unknown) => void, reject, timer });
      this.socket.ref();
      this.socket.write(`${JSON.stringify({ id, method, params: params ?? null })}\n`);
    });
  }

  /** Closes the connection; pending calls reject with kind `disconnected`. Idempotent. */
  close(): void {
    this.socket.destroy();
    this.onClose();
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let newline = this.buffered.indexOf('\n');
    while (newline >= 0) {
      const line = this.buffered.slice(0, newline);
      this.buffered = this.buffered.slice(newline + 1);
      this.onResponse(line);
      newline = this.buffered.indexOf('\n');
    }
  }

  private onResponse(line: string): void {
    let response: { id?: unknown; result?: unknown; error?: { name?: unknown; message?: unknown } };
    try {
      response = JSON.parse(line) as typeof response;
    } catch {
      return;
    }
    const call = typeof response.id === 'number' ? this.settle(response.id) : undefined;
    if (call === undefined) return;
    if (response.error === undefined) {
      call.resolve(response.result);
      return;
    }
    const remoteName = typeof response.error.name === 'string' ? response.error.name : 'Error';
    call.reject(this.callError(call.method, 'remote', String(response.error.message), remoteName));
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, call] of [...this.pending]) {
      this.settle(id);
      call.reject(this.callError(call.method, 'disconnected', 'the VMM closed the connection before answering'));
    }
  }

  private settle(id: number): PendingCall | undefined {
    const call = this.pending.get(id);
    if (call === undefined) return undefined;
    clearTimeout(call.timer);
    this.pending.delete(id);
    if (this.pending.size === 0) this.socket.unref();
    return call;
  }

  private callError(
    method: string,
    kind: 'remote' | 'timeout' | 'disconnected',
    message: string,
    remoteName?: string,
  ): VmmCallError {
    return new VmmCallError({
      method,
      vmId: this.vmId,
      kind,
      message,
      ...(remoteName === undefined ? {} : { remoteName }),
    });
  }
}
