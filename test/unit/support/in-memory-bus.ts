/**
 * An in-process message bus for unit tests of the migration engine: a broker that routes between
 * connections, each a MessageBus (data-plane/message-bus.ts) the engine takes where it would take
 * a NATS connection. It keeps the NATS semantics the engine relies on:
 * - subjects match token by token, `*` one token and `>` the rest;
 * - delivery is at most once and asynchronous: each subscription gets its messages in publish
 *   order, in a later turn of the event loop, one callback at a time; the bytes are copied, as
 *   they would be on the wire;
 * - a message with a `reply` subject that no subscription takes comes back on `reply` at once as
 *   an empty message with status `503` (no responders), as nats-server does for nats.js clients.
 *
 * Faults, for what the tests need: the next messages on a subject can be dropped, duplicated or
 * held back (then released in order or reversed, which reorders them); a connection's link can be
 * cut (its publishes are lost, nothing reaches it, `flush` pends; status `disconnect`) and brought
 * back (status `reconnect`).
 */
import type { BusMessage, BusStatus, BusSubscription, MessageBus } from '../../../data-plane/message-bus';

/** What a fault rule does to a message it takes. */
export type BusFault = 'drop' | 'duplicate' | 'hold';

interface FaultRule {
  pattern: string;
  fault: BusFault;
  /** Messages on the subject to let through untouched before the rule takes any. */
  skip: number;
  /** Takes only messages whose bytes this accepts (all if absent). */
  when?: (data: Uint8Array) => boolean;
  /** Messages the rule still takes. */
  remaining: number;
}

interface Published {
  subject: string;
  data: Uint8Array;
  reply?: string;
  status?: string;
  from: InMemoryBus;
}

/** True if `subject` matches `pattern` (NATS wildcards `*` and `>`). */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i += 1) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

/** The broker: connections made from one broker reach each other. */
export class InMemoryBroker {
  private readonly subs = new Set<InMemorySubscription>();
  private readonly rules: FaultRule[] = [];
  private readonly held: Published[] = [];
  private readonly heldWaiters: { count: number; resolve: () => void }[] = [];
  /** Messages dropped by a `drop` rule, or lost because a link was cut. */
  dropped = 0;

  /** A new connection; `inboxPrefix` is where its requests' replies arrive (default `_INBOX`). */
  connect(options: { inboxPrefix?: string } = {}): InMemoryBus {
    return new InMemoryBus(this, options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix });
  }

  /**
   * Applies `fault` to the next `count` messages (default: all) on subjects matching `pattern` that
   * `when` accepts, after letting `skip` of them through. Rules apply in the order they were added,
   * at most one per message.
   */
  fault(
    pattern: string,
    fault: BusFault,
    options: { count?: number; skip?: number; when?: (data: Uint8Array) => boolean } = {},
  ): void {
    this.rules.push({
      pattern,
      fault,
      skip: options.skip ?? 0,
      remaining: options.count ?? Infinity,
      ...(options.when === undefined ? {} : { when: options.when }),
    });
  }

  /** Removes every fault rule (messages held stay held until released). */
  clearFaults(): void {
    this.rules.length = 0;
  }

  /** Messages held back so far by `hold` rules. */
  get heldCount(): number {
    return this.held.length;
  }

  /** Resolves once `count` messages are held back. */
  waitForHeld(count: number): Promise<void> {
    if (this.held.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.heldWaiters.push({ count, resolve }));
  }

  /** Delivers the messages held back, in publish order or (`reverse`) the other way round. */
  releaseHeld(options: { reverse?: boolean } = {}): void {
    const messages = this.held.splice(0);
    if (options.reverse === true) messages.reverse();
    for (const message of messages) this.route(message);
  }

  /** @internal */
  add(sub: InMemorySubscription): void {
    this.subs.add(sub);
  }

  /** @internal */
  remove(sub: InMemorySubscription): void {
    this.subs.delete(sub);
  }

  /** @internal A message as its publisher sent it: fault rules apply, then routing. */
  publish(message: Published): void {
    const rule = this.rules.find(
      (r) => r.remaining > 0 && subjectMatches(r.pattern, message.subject) && (r.when?.(message.data) ?? true),
    );
    if (rule && rule.skip > 0) rule.skip -= 1;
    else if (rule) {
      rule.remaining -= 1;
      if (rule.fault === 'drop') {
        this.dropped += 1;
        return;
      }
      if (rule.fault === 'hold') {
        this.held.push(message);
        for (const waiter of this.heldWaiters.filter((w) => this.held.length >= w.count)) {
          this.heldWaiters.splice(this.heldWaiters.indexOf(waiter), 1);
          waiter.resolve();
        }
        return;
      }
      if (rule.fault === 'duplicate') this.route(message);
    }
    this.route(message);
  }

  private route(message: Published): void {
    let taken = false;
    for (const sub of this.subs) {
      // A connection whose link is cut has no subscriptions at the server.
      if (sub.bus.isCut || !subjectMatches(sub.subject, message.subject)) continue;
      taken = true;
      sub.enqueue(message);
    }
    // nats-server answers a request nobody takes with a 503 status on the reply subject.
    if (!taken && message.reply !== undefined && message.status === undefined)
      this.route({ subject: message.reply, data: new Uint8Array(0), status: '503', from: message.from });
  }
}

/** A subscription of one connection; delivers in order, asynchronously. */
class InMemorySubscription implements BusSubscription {
  private readonly queue: Published[] = [];
  private scheduled = false;
  private closed = false;

  constructor(
    readonly subject: string,
    readonly bus: InMemoryBus,
    private readonly callback: (err: Error | null, msg: BusMessage) => void,
  ) {}

  enqueue(message: Published): void {
    this.queue.push(message);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.deliver());
  }

  private deliver(): void {
    this.scheduled = false;
    for (let message = this.queue.shift(); message !== undefined; message = this.queue.shift()) {
      if (this.closed) return;
      this.callback(null, this.bus.received(message));
    }
  }

  /** True once nothing is queued for delivery. */
  get idle(): boolean {
    return this.queue.length === 0;
  }

  unsubscribe(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.bus.broker.remove(this);
  }

  isClosed(): boolean {
    return this.closed;
  }
}

/** One connection to an InMemoryBroker; see the module comment. */
export class InMemoryBus implements MessageBus {
  private readonly subs = new Set<InMemorySubscription>();
  private readonly statusListeners = new Set<(status: BusStatus | undefined) => void>();
  private readonly flushWaiters: (() => void)[] = [];
  private isClosed = false;
  private resolveClosed: () => void = () => undefined;
  private readonly closedPromise = new Promise<void>((resolve) => (this.resolveClosed = resolve));
  /** True while the link is cut (see `cut`). */
  isCut = false;

  constructor(
    readonly broker: InMemoryBroker,
    readonly options: { readonly inboxPrefix?: string },
  ) {}

  publish(subject: string, data: Uint8Array, options: { reply?: string } = {}): void {
    if (this.isClosed) throw new Error('in-memory bus: connection closed');
    if (this.isCut) {
      this.broker.dropped += 1;
      return;
    }
    const message: Published = { subject, data: Uint8Array.prototype.slice.call(data), from: this };
    if (options.reply !== undefined) message.reply = options.reply;
    this.broker.publish(message);
  }

  subscribe(subject: string, options: { callback: (err: Error | null, msg: BusMessage) => void }): BusSubscription {
    if (this.isClosed) throw new Error('in-memory bus: connection closed');
    const sub = new InMemorySubscription(subject, this, options.callback);
    this.subs.add(sub);
    this.broker.add(sub);
    return sub;
  }

  /** @internal The message as a subscriber on this connection sees it. */
  received(message: Published): BusMessage {
    const { reply } = message;
    return {
      subject: message.subject,
      data: message.data,
      ...(reply === undefined ? {} : { reply }),
      ...(message.status === undefined ? {} : { headers: { status: message.status } }),
      respond: (data = new Uint8Array(0)) => {
        if (reply === undefined) return false;
        this.publish(reply, data);
        return true;
      },
    };
  }

  flush(): Promise<void> {
    if (this.isClosed) return Promise.reject(new Error('in-memory bus: connection closed'));
    if (this.isCut) return new Promise((resolve) => this.flushWaiters.push(resolve));
    return new Promise((resolve) => setImmediate(resolve));
  }

  status(): AsyncIterable<BusStatus> {
    const events: BusStatus[] = [];
    let wake: (() => void) | undefined;
    let ended = this.isClosed;
    const listener = (status: BusStatus | undefined): void => {
      if (status === undefined) ended = true;
      else events.push(status);
      wake?.();
    };
    this.statusListeners.add(listener);
    const listeners = this.statusListeners;
    return {
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const event = events.shift();
            if (event !== undefined) yield event;
            else if (ended) return;
            else await new Promise<void>((resolve) => (wake = resolve));
          }
        } finally {
          listeners.delete(listener);
        }
      },
    };
  }

  /** Cuts the link: publishes are lost, nothing is delivered here, `flush` pends; status `disconnect`. */
  cut(): void {
    if (this.isCut) return;
    this.isCut = true;
    this.emit({ type: 'disconnect' });
  }

  /** Brings the link back: pending flushes resolve; status `reconnect`. */
  restore(): void {
    if (!this.isCut) return;
    this.isCut = false;
    for (const resolve of this.flushWaiters.splice(0)) resolve();
    this.emit({ type: 'reconnect' });
  }

  async drain(): Promise<void> {
    while ([...this.subs].some((sub) => !sub.idle && !sub.isClosed()))
      await new Promise<void>((resolve) => setImmediate(resolve));
    await this.close();
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const sub of this.subs) sub.unsubscribe();
    for (const resolve of this.flushWaiters.splice(0)) resolve();
    this.emit(undefined);
    this.resolveClosed();
  }

  closed(): Promise<void | Error> {
    return this.closedPromise;
  }

  private emit(status: BusStatus | undefined): void {
    for (const listener of this.statusListeners) listener(status);
  }
}
