/**
 * A small fan-out of typed items (QMP events, guest console messages) to listeners and to waiters
 * that want the next item matching a predicate, with a timeout. Closing the channel rejects every
 * pending waiter with the reason given. Items are not buffered: a waiter sees only items emitted
 * after it was created, so create it before the action that causes the item.
 */
import { QemuTimeoutError } from './errors';

/** How long a wait may take; default DEFAULT_WAIT_TIMEOUT_MS. */
export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Default time a waiter waits for its item, in milliseconds. */
export const DEFAULT_WAIT_TIMEOUT_MS = 30_000;

/** A fan-out of items of type T; see the module header. */
export class EventChannel<T> {
  private readonly listeners = new Set<(item: T) => void>();
  private closedWith: Error | undefined;
  private readonly closeHandlers = new Set<(error: Error) => void>();

  /** Delivers `item` to every listener and matching waiter; ignored once closed. */
  emit(item: T): void {
    if (this.closedWith) return;
    for (const listener of [...this.listeners]) listener(item);
  }

  /** Calls `listener` for every item from now on; returns the function that stops it. */
  subscribe(listener: (item: T) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The next item for which `predicate` holds. Rejects with QemuTimeoutError naming `what` after
   * the timeout, with the signal's reason when aborted, and with the close reason when the channel
   * closes first (or already has).
   */
  next(what: string, predicate: (item: T) => boolean, options: WaitOptions = {}): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_TIMEOUT_MS;
    return new Promise<T>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        unsubscribe();
        this.closeHandlers.delete(onClose);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const onClose = (error: Error): void => {
        cleanup();
        reject(error);
      };
      const onAbort = (): void => {
        cleanup();
        reject(options.signal?.reason);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new QemuTimeoutError(what, timeoutMs));
      }, timeoutMs);
      const unsubscribe = this.subscribe((item) => {
        if (!predicate(item)) return;
        cleanup();
        resolve(item);
      });
      this.closeHandlers.add(onClose);
      if (options.signal?.aborted) onAbort();
      else options.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Every item from now until the channel closes (the iteration then ends without an error). */
  async *stream(): AsyncGenerator<T> {
    const queue: T[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = this.subscribe((item) => {
      queue.push(item);
      wake?.();
    });
    const onClose = (): void => wake?.();
    this.closeHandlers.add(onClose);
    try {
      for (;;) {
        const item = queue.shift();
        if (item !== undefined) yield item;
        else if (this.closedWith) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      unsubscribe();
      this.closeHandlers.delete(onClose);
    }
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Ends the channel: pending and later waiters reject with `reason`, streams end. Idempotent. */
  close(reason: Error): void {
    if (this.closedWith) return;
    this.closedWith = reason;
    this.listeners.clear();
    for (const handler of [...this.closeHandlers]) handler(reason);
  }
}
