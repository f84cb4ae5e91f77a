/**
 * The upload loop of an object page file. Marked chunks (chunk-marks.ts) are uploaded whole, up to
 * MAX_PARALLEL_UPLOADS at once, each from a copy of the pages as guest memory holds them when the
 * upload starts: the loop never keeps the batches it is handed, so a store slower than the stream
 * costs marks, not memory, and the pages it uploads are the newest ones.
 *
 * Ordering: two uploads of one chunk never overlap, since a later PUT could land first and an older
 * image replace a newer one. Each copied page is checked (its self-check, or all zeros; or, for a
 * guest that keeps versions apart from its pages, the version the source gives with the copy); one
 * torn by a write during the copy is copied again, and if it stays torn it is marked again under its
 * old mark number (so a sync waits for it) and counts as not held.
 *
 * Sealed at rest (page-seal.ts): each page is copied and checked as in clear, then sealed into its
 * slot of the chunk image; a zero page is left as a never-written slot, which reads as zeros.
 *
 * Failures: a transient one (see chunk-upload-health.ts) puts the chunk's marks back and the loop
 * waits (50 ms doubling to 1 s) and goes on, one upload at a time, for as long as it takes; the
 * outage is recorded. A permanent one stops the loop, and every later sync rejects with it.
 */
import { crc32 } from 'node:zlib';
import { PAGE_HEADER_BYTES, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { PageStoreError } from '../errors';
import { ChunkMarks, type TakenChunk } from './chunk-marks';
import { UploadHealth, isTransientStoreFailure, reasonOf, type StoreHealth } from './chunk-upload-health';
import { CHUNK_PAGES, chunkKey, migrationPrefix, pagesInChunk } from './object-page-layout';
import { slotBytesOf, type PageSealer } from '../page-seal';
import type { ObjectStore } from './object-store';
import type { PageSource, WriterPace } from '../page-store';

/** Most chunk uploads in flight at once (1 MiB × 8 was the best PUT throughput measured here). */
export const MAX_PARALLEL_UPLOADS = 8;
/**
 * Most uploads in flight while the stream is healthy and sending (pace `yield`): the uploads' CPU
 * (the S3 client costs about 4–5 s per GB here) is taken from the stream's on two cores.
 */
export const YIELDING_PARALLEL_UPLOADS = 1;

/**
 * How hard the uploads go: `full` (MAX_PARALLEL_UPLOADS), `yield` (YIELDING_PARALLEL_UPLOADS, the
 * stream goes first) or `paused` (none start; those in flight finish).
 */
export type UploadPace = WriterPace;
/** Copies of a page that fails its self-check before its upload gives up on it. */
export const COPY_ATTEMPTS = 3;

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE_BYTES);

/** Version of page image `page` if it checks as page `index`: its generation, 0 for a zero page, -1 if torn. */
export function checkedVersion(page: Buffer, index: number): number {
  if (page.readUInt32LE(0) === index && crc32(page.subarray(PAGE_HEADER_BYTES)) === page.readUInt32LE(8))
    return page.readUInt32LE(4);
  return page.equals(ZERO_PAGE) ? 0 : -1;
}

interface Upload extends TakenChunk {
  startedAt: number;
  done: Promise<void>;
}

/** Uploads the marked chunks of one migration from `source`; see the module comment. */
export class ChunkUploader {
  private readonly marks: ChunkMarks;
  private readonly health = new UploadHealth();
  private readonly inFlight = new Map<number, Upload>();
  private readonly buffers: Buffer[] = [];
  private inFlightPages = 0;
  private inFlightBytes = 0;
  private syncWaiters: { mark: number; resolve: () => void; reject: (error: unknown) => void }[] = [];
  private writeWaiters: { maxBytes: number; resolve: () => void }[] = [];
  private failure: PageStoreError | undefined;
  private pausedUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private pace: UploadPace = 'full';
  /** Bytes of one page's place in a chunk: a page, or a sealed slot. */
  private readonly slotBytes: number;
  /** Where a page is copied before it is sealed into its slot. */
  private readonly scratch = Buffer.alloc(PAGE_SIZE_BYTES);

  /**
   * Reads pages from `source`; `syncedVersions` (one per page) is updated in place. With `sealer`,
   * pages are uploaded sealed.
   */
  constructor(
    private readonly objects: ObjectStore,
    private readonly migrationId: string,
    private readonly source: PageSource,
    private readonly syncedVersions: Uint32Array,
    private readonly sealer?: PageSealer,
  ) {
    this.marks = new ChunkMarks(source.pageCount);
    this.slotBytes = slotBytesOf(sealer);
  }

  /** Marks pages `indexes` for upload. Ignored once the loop has stopped. */
  mark(indexes: Iterable<number>): void {
    if (this.closed || this.failure) return;
    this.marks.mark(indexes);
    this.pump();
  }

  /** Sets how hard the uploads go (see UploadPace); takes effect for the next upload to start. */
  setPace(pace: UploadPace): void {
    this.pace = pace;
    this.pump();
  }

  /** Bytes of pages marked and not yet uploaded, counting those in flight. */
  get pendingBytes(): number {
    return (this.marks.pendingPages + this.inFlightPages) * PAGE_SIZE_BYTES;
  }

  /** Bytes of the chunk images in flight. */
  get bufferedBytes(): number {
    return this.inFlightBytes;
  }

  /** Outages and failure so far. */
  storeHealth(): StoreHealth {
    return this.health.snapshot();
  }

  /** Resolves once every page marked before the call was uploaded by an upload started after its mark. */
  sync(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const mark = this.marks.lastMark;
    if (mark < this.oldestOutstanding()) return Promise.resolve();
    if (this.closed) return Promise.reject(this.closedError());
    return new Promise((resolve, reject) => this.syncWaiters.push({ mark, resolve, reject }));
  }

  /** Resolves once pendingBytes ≤ `maxBytes`, or the loop has stopped. */
  waitForWrites(maxBytes: number): Promise<void> {
    if (this.pendingBytes <= maxBytes || this.closed || this.failure) return Promise.resolve();
    return new Promise((resolve) => this.writeWaiters.push({ maxBytes, resolve }));
  }

  /** Stops taking chunks, waits for the uploads in flight; a sync still waiting rejects. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await Promise.all([...this.inFlight.values()].map((upload) => upload.done));
    this.settle();
  }

  private oldestOutstanding(): number {
    let oldest = this.marks.oldestPending();
    for (const upload of this.inFlight.values()) oldest = Math.min(oldest, upload.since);
    return oldest;
  }

  private pump(): void {
    if (this.closed || this.failure || this.timer) return;
    const waitMs = this.pausedUntil - Date.now();
    if (waitMs > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, waitMs);
      this.timer.unref();
      return;
    }
    // During an outage one upload at a time probes the store; the others would only fail too.
    const limit =
      this.pace === 'paused'
        ? 0
        : this.health.openOutage || this.pace === 'yield'
          ? YIELDING_PARALLEL_UPLOADS
          : MAX_PARALLEL_UPLOADS;
    while (this.inFlight.size < limit) {
      const taken = this.marks.take((chunk) => this.inFlight.has(chunk));
      if (!taken) return;
      this.start(taken);
    }
  }

  private start(taken: TakenChunk): void {
    const buffer = this.buffers.pop() ?? Buffer.alloc(CHUNK_PAGES * this.slotBytes);
    const pageCount = pagesInChunk(taken.chunk, this.source.pageCount);
    const image = buffer.subarray(0, pageCount * this.slotBytes);
    const versions = this.copyChunk(taken.chunk, image);
    const key = chunkKey(this.migrationId, taken.chunk);
    const startedAt = Date.now();
    this.inFlightPages += taken.pages.length;
    this.inFlightBytes += image.length;
    // Deferred, so that a put that throws at once fails this upload, not the caller of mark().
    const done = Promise.resolve()
      .then(() => this.objects.put(key, image))
      .then(
        () => this.finish(upload, versions),
        (error: unknown) => this.fail(upload, versions, key, error),
      );
    const upload: Upload = { ...taken, startedAt, done };
    this.inFlight.set(taken.chunk, upload);
    void done.finally(() => {
      this.inFlight.delete(taken.chunk);
      this.inFlightPages -= taken.pages.length;
      this.inFlightBytes -= image.length;
      this.buffers.push(buffer);
      this.settle();
      this.pump();
    });
  }

  /** Copies the chunk's pages into `image` (sealing them); returns each page's checked version (-1: torn). */
  private copyChunk(chunk: number, image: Buffer): Float64Array {
    const first = chunk * CHUNK_PAGES;
    const slotBytes = this.slotBytes;
    const versions = new Float64Array(image.length / slotBytes);
    for (let k = 0; k < versions.length; k += 1) {
      const slot = image.subarray(k * slotBytes, (k + 1) * slotBytes);
      const page = this.sealer ? this.scratch : slot;
      let version = -1;
      for (let attempt = 0; attempt < COPY_ATTEMPTS && version < 0; attempt += 1) {
        version = this.copyPage(first + k, page);
      }
      versions[k] = version;
      if (!this.sealer) continue;
      if (version === 0) slot.fill(0);
      else this.sealer.seal(first + k, page, slot);
    }
    return versions;
  }

  /** Copies page `index` into `page` and returns its checked version (-1: torn). */
  private copyPage(index: number, page: Buffer): number {
    if (this.source.copyVersionedPage) return this.source.copyVersionedPage(index, page);
    this.source.copyPage(index, page);
    return checkedVersion(page, index);
  }

  private finish(upload: Upload, versions: Float64Array): void {
    this.health.noteSuccess(upload.startedAt);
    this.applyVersions(upload, versions, true);
  }

  private fail(upload: Upload, versions: Float64Array, key: string, error: unknown): void {
    if (isTransientStoreFailure(error)) {
      // The object holds the old image or, if the PUT landed after all, the new one: a torn page
      // of the new image is not held either way, a checked one at its old version at least.
      this.applyVersions(upload, versions, false);
      for (const index of upload.pages) this.marks.remark(index, upload.since);
      this.pausedUntil = Date.now() + this.health.noteTransientFailure(upload.startedAt, error);
      return;
    }
    this.health.noteFailure(key, error);
    this.failure ??= new PageStoreError(`upload of chunk ${upload.chunk} failed: ${reasonOf(error)}`, {
      migrationId: this.migrationId,
      path: `${this.objects.location} ${key}`,
      cause: error,
    });
  }

  /** Records what the chunk object holds now (only torn pages if `landed` is false) and re-marks torn pages. */
  private applyVersions(upload: Upload, versions: Float64Array, landed: boolean): void {
    const first = upload.chunk * CHUNK_PAGES;
    versions.forEach((version, k) => {
      if (version >= 0) {
        if (landed) this.syncedVersions[first + k] = version;
        return;
      }
      this.syncedVersions[first + k] = 0;
      this.marks.remark(first + k, upload.since);
    });
  }

  /** Settles the waiters that the last change satisfied. */
  private settle(): void {
    const stopped = this.failure ?? (this.closed && this.inFlight.size === 0 ? this.closedError() : undefined);
    const oldest = this.oldestOutstanding();
    const waiting = this.syncWaiters;
    this.syncWaiters = [];
    for (const waiter of waiting) {
      if (this.failure) waiter.reject(this.failure);
      else if (waiter.mark < oldest) waiter.resolve();
      else if (stopped) waiter.reject(stopped);
      else this.syncWaiters.push(waiter);
    }
    const writers = this.writeWaiters;
    this.writeWaiters = [];
    for (const writer of writers) {
      if (stopped || this.pendingBytes <= writer.maxBytes) writer.resolve();
      else this.writeWaiters.push(writer);
    }
  }

  private closedError(): PageStoreError {
    return new PageStoreError('the page file was closed before its marked pages were uploaded', {
      migrationId: this.migrationId,
      path: `${this.objects.location} ${migrationPrefix(this.migrationId)}`,
    });
  }
}
