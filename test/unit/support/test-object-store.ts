/**
 * An ObjectStore around a real one (a DirectoryObjectStore) for unit tests of the logic above the
 * interface: it can fail the next puts with a given error, hold puts until the test releases them,
 * and records what it saw (keys put, most puts in flight, overlapping puts of one key).
 */
import type { GetOptions, ObjectInfo, ObjectStore, PutOptions, StoredObject } from '../../../store/object/object-store';
import { PAGE_SIZE_BYTES, type GuestMemory } from '../../../vmm/guest-memory';
import type { PageEntry, PageSource } from '../../../store/page-store';

/** A put the store holds until `release()`, which resolves once the put and what it set off have run. */
export interface HeldPut {
  key: string;
  release(): Promise<void>;
}

/** See the module comment. */
export class TestObjectStore implements ObjectStore {
  readonly location: string;
  /** Keys of every put, in the order they started. */
  readonly puts: string[] = [];
  maxInFlight = 0;
  /** Times a put started while another put of the same key was in flight. */
  overlapsOfOneKey = 0;
  private inFlight = 0;
  private readonly busyKeys = new Set<string>();
  private readonly failures: (() => Error)[] = [];
  private holding = false;
  private readonly held: HeldPut[] = [];
  private readonly heldWaiters: ((put: HeldPut) => void)[] = [];

  constructor(private readonly inner: ObjectStore) {
    this.location = inner.location;
  }

  /** The next `count` puts throw `makeError()` instead of storing. */
  failNextPuts(count: number, makeError: () => Error): void {
    for (let i = 0; i < count; i += 1) this.failures.push(makeError);
  }

  /** From now on every put waits for its release (see nextHeld); `false` stops holding new ones. */
  hold(on = true): void {
    this.holding = on;
  }

  /** The next held put, once one is waiting. */
  nextHeld(): Promise<HeldPut> {
    const put = this.held.shift();
    if (put) return Promise.resolve(put);
    return new Promise((resolve) => this.heldWaiters.push(resolve));
  }

  async put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }> {
    this.puts.push(key);
    if (this.busyKeys.has(key)) this.overlapsOfOneKey += 1;
    this.busyKeys.add(key);
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      let settled = (): void => undefined;
      if (this.holding) {
        await new Promise<void>((resume) => {
          const put = {
            key,
            release: () => {
              resume();
              // Settled, and the caller's callbacks on it run before the next turn of the event loop.
              return new Promise<void>((resolve) => (settled = () => setImmediate(resolve)));
            },
          };
          const waiter = this.heldWaiters.shift();
          if (waiter) waiter(put);
          else this.held.push(put);
        });
      }
      try {
        const fail = this.failures.shift();
        if (fail) throw fail();
        return await this.inner.put(key, body, options);
      } finally {
        settled();
      }
    } finally {
      this.inFlight -= 1;
      this.busyKeys.delete(key);
    }
  }

  get(key: string, options?: GetOptions): Promise<StoredObject | undefined> {
    return this.inner.get(key, options);
  }

  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }

  list(prefix?: string): Promise<string[]> {
    return this.inner.list(prefix);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}

/** The guest memory as a page source, as the VMM hands it to the writer. */
export function memorySource(memory: GuestMemory): PageSource {
  return { pageCount: memory.pageCount, copyPage: (index, target) => memory.page(index).copy(target) };
}

/** Entries for `indexes` at their current generation, and the batch data (which the object writer ignores). */
export function batchOf(memory: GuestMemory, indexes: readonly number[]): { entries: PageEntry[]; data: Buffer } {
  const entries = indexes.map((index) => ({ index, version: memory.meta[index * 2] as number }));
  return { entries, data: Buffer.alloc(indexes.length * PAGE_SIZE_BYTES) };
}
