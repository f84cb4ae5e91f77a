/**
 * Which pages of an object page file wait for an upload, and since when. Every `writePages` call is
 * one mark, numbered in order; a chunk remembers the oldest mark it has not yet been taken for. A
 * page marked twice before its chunk is taken costs one upload: the marks coalesce.
 *
 * Chunks are taken oldest mark first (FIFO by the chunk's first untaken mark), and chunks marked
 * again after a torn page or a failed upload go before all others, since their marks are older
 * still. Oldest first is what `sync()` waits for: a round's end waits for the marks of that round,
 * which then never queue behind the next round's. A hot chunk cannot starve the others: marking it
 * again while it waits does not move it.
 */
import { CHUNK_PAGES, chunkCountOf, pagesInChunk } from './object-page-layout';

/** What an upload took of a chunk: its marked pages and the oldest of their marks. */
export interface TakenChunk {
  chunk: number;
  /** Number of the oldest mark the upload covers. */
  since: number;
  /** The pages that were marked (ascending). */
  pages: number[];
}

/** Pending marks of one page file; see the module comment. */
export class ChunkMarks {
  /** Number of the newest mark (0 before the first). */
  lastMark = 0;
  /** Pages marked and not yet taken by an upload. */
  pendingPages = 0;
  private readonly pending: Uint8Array;
  /** Oldest untaken mark of each chunk; Infinity for a chunk with none. */
  private readonly since: Float64Array;
  /** Chunks with untaken marks, in the order of their oldest mark. */
  private readonly queue = new Set<number>();
  /** Chunks marked again with an old mark number: taken before the queue. */
  private readonly urgent = new Set<number>();

  constructor(readonly pageCount: number) {
    this.pending = new Uint8Array(pageCount);
    this.since = new Float64Array(chunkCountOf(pageCount)).fill(Infinity);
  }

  /** Marks `indexes` as one new mark; returns its number. Throws RangeError for a page out of range. */
  mark(indexes: Iterable<number>): number {
    this.lastMark += 1;
    for (const index of indexes) {
      if (!Number.isInteger(index) || index < 0 || index >= this.pageCount)
        throw new RangeError(`page index must be an integer in [0, ${this.pageCount}), got ${index}`);
      this.markPage(index, this.lastMark);
    }
    return this.lastMark;
  }

  /** Marks `index` again under the older mark `since` (a torn copy, a failed upload). */
  remark(index: number, since: number): void {
    const chunk = Math.floor(index / CHUNK_PAGES);
    this.markPage(index, since);
    this.queue.delete(chunk);
    this.urgent.add(chunk);
  }

  /** Takes the chunk with the oldest marks that `busy` does not exclude, clearing its marks. */
  take(busy: (chunk: number) => boolean): TakenChunk | undefined {
    for (const candidates of [this.urgent, this.queue]) {
      for (const chunk of candidates) {
        if (busy(chunk)) continue;
        candidates.delete(chunk);
        return this.clear(chunk);
      }
    }
    return undefined;
  }

  /** The oldest untaken mark of any chunk; Infinity if there is none. */
  oldestPending(): number {
    let oldest = Infinity;
    for (const chunk of this.urgent) oldest = Math.min(oldest, this.since[chunk] as number);
    const first = this.queue.values().next();
    if (first.done !== true) oldest = Math.min(oldest, this.since[first.value] as number);
    return oldest;
  }

  private markPage(index: number, mark: number): void {
    const chunk = Math.floor(index / CHUNK_PAGES);
    if (this.pending[index] === 0) {
      this.pending[index] = 1;
      this.pendingPages += 1;
    }
    if (mark < (this.since[chunk] as number)) {
      if (this.since[chunk] === Infinity && !this.urgent.has(chunk)) this.queue.add(chunk);
      this.since[chunk] = mark;
    }
  }

  private clear(chunk: number): TakenChunk {
    const first = chunk * CHUNK_PAGES;
    const pages: number[] = [];
    for (let index = first; index < first + pagesInChunk(chunk, this.pageCount); index += 1) {
      if (this.pending[index] === 0) continue;
      this.pending[index] = 0;
      pages.push(index);
    }
    const since = this.since[chunk] as number;
    this.pendingPages -= pages.length;
    this.since[chunk] = Infinity;
    return { chunk, since, pages };
  }
}
