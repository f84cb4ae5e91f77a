/**
 * The VMM's control server: JSON lines over a Unix domain socket. A request is
 * `{"id":…,"method":"…","params":…}`; the answer is `{"id":…,"result":…}` or
 * `{"id":…,"error":{"name":"…","message":"…"}}`. Requests are served concurrently, on one
 * connection or many, and answered in the order they finish.
 */
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import { SocketInUseError, VmmMethodNotFoundError } from './errors';
import type { VmmHandler } from './extensions';

/** Longest request line accepted (bytes); a longer one closes the connection. */
export const MAX_REQUEST_LINE_BYTES = 1024 * 1024;

/** What the server serves and where. */
export interface VmmServerOptions {
  socketPath: string;
  vmId: string;
  handlers: Readonly<Record<string, VmmHandler>>;
  log(msg: string): void;
}

/** A listening control server. */
export interface VmmServer {
  /** Stops listening, ends every connection after its pending writes and removes the socket file. */
  close(): Promise<void>;
}

/** Removes a socket file left by a dead process; throws SocketInUseError if something answers on it. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new SocketInUseError(socketPath);
  await fs.rm(socketPath, { force: true });
}

function errorBody(err: unknown): { name: string; message: string } {
  if (err instanceof Error) return { name: err.name, message: err.message };
  return { name: 'Error', message: String(err) };
}

async function answer(line: string, opts: VmmServerOptions): Promise<string> {
  let id: unknown = null;
  try {
    const request = JSON.parse(line) as { id?: unknown; method?: unknown; params?: unknown };
    id = request.id ?? null;
    const method = typeof request.method === 'string' ? request.method : String(request.method);
    const handler = Object.hasOwn(opts.handlers, method) ? opts.handlers[method] : undefined;
    if (handler === undefined) throw new VmmMethodNotFoundError(method, opts.vmId);
    const result = await handler(request.params);
    return JSON.stringify({ id, result: result ?? null });
  } catch (err) {
    return JSON.stringify({ id, error: errorBody(err) });
  }
}

function serveConnection(socket: net.Socket, opts: VmmServerOptions): void {
  let buffered = '';
  socket.setEncoding('utf8');
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim() !== '') {
        void answer(line, opts).then((response) => {
          if (!socket.destroyed && socket.writable) socket.write(`${response}\n`);
        });
      }
      newline = buffered.indexOf('\n');
    }
    if (buffered.length > MAX_REQUEST_LINE_BYTES) {
      opts.log(`closing a control connection: request line longer than ${MAX_REQUEST_LINE_BYTES} bytes`);
      socket.destroy();
    }
  });
}

/**
 * Listens on `socketPath` (replacing a stale socket file; throws SocketInUseError if a live
 * process owns it) and serves `handlers`. Resolves once listening.
 */
export async function startVmmServer(opts: VmmServerOptions): Promise<VmmServer> {
  await clearStaleSocket(opts.socketPath);
  const connections = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    serveConnection(socket, opts);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    async close(): Promise<void> {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of connections) socket.end();
      const ended = Promise.all([...connections].map((s) => new Promise((r) => s.once('close', r))));
      // A client that never closes its end must not hold the VMM up: give up after a second.
      await Promise.race([Promise.all([closed, ended]), new Promise((r) => setTimeout(r, 1000).unref())]);
      for (const socket of connections) socket.destroy();
      await fs.rm(opts.socketPath, { force: true });
    },
  };
}
