/**
 * A TCP proxy for fault injection: it listens on 127.0.0.1 (or on an address of a link the test
 * created, see netns.ts) and forwards every connection to one target.
 *
 * `stall()` freezes every connection, open or opened later, in both directions without closing
 * anything: the proxy stops reading its sockets, so bytes sent after the stall stay in the kernel's
 * buffers on the way in (and the sender's window closes) instead of passing through, and neither
 * side sees an end or an error, as with a network path that silently stops delivering. A peer's
 * close that arrives meanwhile is noticed only after `resume()`, because a paused socket does not
 * read the FIN either. `close()` ends it all.
 */
import * as net from 'node:net';
import { LOOPBACK_HOST } from './ports';

/** Where the proxy listens and where it forwards to. */
export interface TcpProxyOptions {
  /** Port of the target. */
  targetPort: number;
  /** Host of the target; default 127.0.0.1. */
  targetHost?: string;
  /** Address to listen on: 127.0.0.1 (default) or an address of a link the test created, never 0.0.0.0. */
  listenHost?: string;
  /** Port to listen on; default 0, a free port chosen by the kernel. */
  listenPort?: number;
}

/** A running proxy. */
export interface TcpProxy {
  /** Address and port it listens on. */
  host: string;
  port: number;
  /** Connections being forwarded right now. */
  readonly connections: number;
  readonly stalled: boolean;
  /** Stops forwarding in both directions; sockets stay open. Idempotent. */
  stall(): void;
  /** Forwards again whatever was held back. Idempotent. */
  resume(): void;
  /** Closes the listener and every connection; safe to call twice. */
  close(): Promise<void>;
}

/** One direction of a forwarded connection. */
class Relay {
  private held: Buffer[] = [];
  private ended = false;

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly isStalled: () => boolean,
  ) {
    from.on('data', (chunk: Buffer) => this.onData(chunk));
    from.on('end', () => {
      this.ended = true;
      if (!this.isStalled()) to.end();
    });
    if (isStalled()) from.pause();
  }

  private onData(chunk: Buffer): void {
    // A chunk the stream had already read when the stall began is kept back too.
    if (this.isStalled()) {
      this.held.push(chunk);
      this.from.pause();
      return;
    }
    if (!this.to.write(chunk)) {
      this.from.pause();
      this.to.once('drain', () => {
        if (!this.isStalled()) this.from.resume();
      });
    }
  }

  stall(): void {
    this.from.pause();
  }

  resume(): void {
    for (const chunk of this.held) this.to.write(chunk);
    this.held = [];
    if (this.ended) this.to.end();
    else if (this.to.writableNeedDrain) this.to.once('drain', () => this.from.resume());
    else this.from.resume();
  }
}

/** Starts a proxy to `options.targetHost:targetPort`; resolves once it listens. */
export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const targetHost = options.targetHost ?? LOOPBACK_HOST;
  const listenHost = options.listenHost ?? LOOPBACK_HOST;
  const sockets = new Set<net.Socket>();
  const relays = new Set<Relay>();
  let stalled = false;
  const isStalled = (): boolean => stalled;

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    const upstream = net.connect({ host: targetHost, port: options.targetPort, allowHalfOpen: true });
    upstream.pause();
    const pair = [client, upstream];
    const forward = [new Relay(client, upstream, isStalled), new Relay(upstream, client, isStalled)];
    for (const socket of pair) {
      sockets.add(socket);
      socket.setNoDelay(true);
      // The first error or close of either side ends the pair; a stalled pair never sees one.
      socket.on('error', () => undefined);
      socket.once('close', () => {
        for (const s of pair) {
          s.destroy();
          sockets.delete(s);
        }
        for (const r of forward) relays.delete(r);
      });
    }
    for (const r of forward) relays.add(r);
    if (!stalled) {
      client.resume();
      upstream.once('connect', () => {
        if (!stalled) upstream.resume();
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listenHost, port: options.listenPort ?? 0, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error(`tcp proxy on ${listenHost} got no port`);

  return {
    host: listenHost,
    port: address.port,
    get connections() {
      return sockets.size / 2;
    },
    get stalled() {
      return stalled;
    },
    stall: () => {
      stalled = true;
      for (const r of relays) r.stall();
    },
    resume: () => {
      if (!stalled) return;
      stalled = false;
      for (const r of relays) r.resume();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      sockets.clear();
      relays.clear();
      if (!server.listening) return;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
