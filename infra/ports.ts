/**
 * TCP port checks on the loopback interface, where every ferry service listens.
 */
import * as net from 'node:net';

/** Interface every ferry service binds to. */
export const LOOPBACK_HOST = '127.0.0.1';

/** Default poll interval while waiting for a port to open (ms). */
export const DEFAULT_PORT_POLL_MS = 100;

/**
 * Whether `port` can be bound on `host` (default 127.0.0.1) right now. Binding, not connecting,
 * is the test: a listener on 0.0.0.0 also makes the port unusable for a 127.0.0.1 service.
 */
export function isPortFree(port: number, host: string = LOOPBACK_HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/**
 * A port that was free on 127.0.0.1 a moment ago, chosen by the kernel. Another process may take
 * it before the caller binds it; callers that start a service on it get a clear PortInUseError.
 */
export function pickFreePort(host: string = LOOPBACK_HOST): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('kernel returned no port'))));
    });
  });
}

/** `count` distinct free ports on 127.0.0.1 (for a service that needs several). */
export async function pickFreePorts(count: number, host: string = LOOPBACK_HOST): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await pickFreePort(host));
  return [...ports];
}

/** Whether something accepts TCP connections on `host:port` right now. */
export function isPortAnswering(port: number, host: string = LOOPBACK_HOST, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    const done = (answered: boolean): void => {
      socket.destroy();
      resolve(answered);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Polls until `host:port` accepts connections. Resolves true when it does, false when `timeoutMs`
 * passes or `abort` (checked every poll, e.g. "the process exited") returns true.
 */
export async function waitForPort(
  port: number,
  timeoutMs: number,
  options: { host?: string; pollMs?: number; abort?: () => boolean } = {},
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const pollMs = options.pollMs ?? DEFAULT_PORT_POLL_MS;
  for (;;) {
    if (options.abort?.()) return false;
    if (await isPortAnswering(port, options.host ?? LOOPBACK_HOST)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** Polls until `port` is free on 127.0.0.1; false if it is still taken after `timeoutMs`. */
export async function waitForFreePort(
  port: number,
  timeoutMs: number,
  pollMs: number = DEFAULT_PORT_POLL_MS,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await isPortFree(port))) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  return true;
}
