/**
 * The message bus the migration engine talks over: exactly the part of a nats.js `NatsConnection`
 * the engine calls (publish, subscribe with a callback, flush, status events, drain and close), so
 * a real connection is one without an adapter, and a unit test hands in an in-process bus instead.
 *
 * Semantics the engine relies on, which any bus must keep (core NATS does): at-most-once delivery;
 * one subscription's messages arrive in the order they were published, one callback at a time;
 * a message published with a `reply` subject that nobody subscribes to comes back on `reply` as an
 * empty message whose `headers.status` is `503` (no responders); `status()` yields `reconnect`
 * once the link is back after a loss.
 */

/** Headers of a received message, as far as the engine reads them. */
export interface BusHeaders {
  /** A status the server set (`503`: no responders to a request); empty on an ordinary message. */
  readonly status: string;
}

/** A message as a subscriber receives it. */
export interface BusMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Where an answer goes, if the publisher asked for one. */
  readonly reply?: string;
  readonly headers?: BusHeaders;
  /** Publishes `data` on `reply`; false if the message has none. Throws if the bus is closed. */
  respond(data?: Uint8Array): boolean;
}

/** One subscription; `unsubscribe` is idempotent. */
export interface BusSubscription {
  unsubscribe(): void;
  isClosed(): boolean;
}

/** A change of the link, tagged by `type` (nats.js: `disconnect`, `reconnect`, `error`, …). */
export interface BusStatus {
  type: string;
  data?: unknown;
}

/** What the engine calls on its connection; a nats.js `NatsConnection` satisfies it as it is. */
export interface MessageBus {
  /** The connection's options; `inboxPrefix` is where its permissions allow replies to arrive. */
  readonly options?: { readonly inboxPrefix?: string };
  /** Publishes at most once; throws if the connection is closed. */
  publish(subject: string, data: Uint8Array, options?: { reply?: string }): void;
  /** Calls `callback` for each message on `subject` (`*` and `>` wildcards as in NATS). */
  subscribe(subject: string, options: { callback: (err: Error | null, msg: BusMessage) => void }): BusSubscription;
  /** Resolves once the server has seen everything published so far; pends while the link is down. */
  flush(): Promise<void>;
  /** Link events, from now until the connection closes. */
  status(): AsyncIterable<BusStatus>;
  /** Lets subscriptions take what is in flight, then closes. */
  drain(): Promise<void>;
  close(): Promise<void>;
  /** Resolves once the connection has closed (with the error that closed it, if any). */
  closed(): Promise<void | Error>;
}
