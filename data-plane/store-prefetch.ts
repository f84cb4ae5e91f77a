/**
 * The destination reads the page file while the source still writes it (the shared-file variant of
 * US 8,671,238): when the stream is dead or stalled, pages the newest durable round manifest holds
 * at a newer version than guest memory are read and applied during pre-copy, so the switchover only
 * reads what changed since.
 *
 * Semantics: a pass reads only the pages it needs, in runs of consecutive pages, and never regresses
 * a page: a batch from the stream may apply a newer generation while a read is in flight, so a page
 * is applied only if, right after its read and with no await in between, it passes its self-check
 * and is still newer than what memory holds. A page the file holds torn (the source was writing it)
 * or older is left for the switchover and counted. A second pass over a manifest already applied
 * reads nothing. Passes run on the VMM's main thread beside the control socket and the stream: every
 * run of pages awaits its read, and a long scan that reads nothing yields now and then, which lets
 * them in. Stopping (stop(), or a pass's AbortSignal) ends a pass after its read in flight, which is
 * then not applied.
 */
import { applyHashedPage, type PageHashes } from './page-hashes';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { crc32 } from 'node:zlib';
import { PAGE_HEADER_BYTES, PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import type { GuestPages } from '../vmm/guest-port';
import type { Manifest } from '../store/manifest-format';
import type { PageFile, PageFileKey, PageStore } from '../store/page-store';

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE_BYTES);
/** Manifest entries a pass looks at between two turns of the event loop when it reads nothing. */
const SCAN_ENTRIES_PER_TURN = 65_536;

/** Most pages read from the file in one read (256 pages: 1 MiB). */
export const DEFAULT_PREFETCH_RUN_PAGES = 256;
/** How long no batch may arrive before the stream counts as stalled and prefetching starts (ms). */
export const DEFAULT_PREFETCH_STALL_MS = 1_000;
/** How often a stalled receiver looks for a newer round manifest (ms). */
export const DEFAULT_PREFETCH_POLL_MS = 100;

/** What one pass over a manifest did. */
export interface PrefetchPassStats {
  round: number;
  /** Pages read from the file. */
  pagesRead: number;
  /** Pages read and applied to guest memory. */
  pagesApplied: number;
  /** Pages read that failed their self-check (the source was writing them): left for the switchover. */
  pagesTorn: number;
  /** Pages read that were no newer than memory by then (a batch overtook the read). */
  pagesStale: number;
  /** True if the pass was stopped before it went through the whole manifest. */
  aborted: boolean;
}

/** Options of a pass. */
export interface PrefetchPassOptions {
  signal?: AbortSignal;
  /** Most pages per read; default DEFAULT_PREFETCH_RUN_PAGES. */
  runPages?: number;
  /** Where the content hash of every page applied is recorded (the destination's content digest). */
  hashes?: PageHashes;
}

/** Generation of the page image `page` if it passes its self-check as page `index`; 0 for a zero page, -1 if torn. */
function checkedGeneration(page: Buffer, index: number): number {
  if (page.readUInt32LE(0) === index && crc32(page.subarray(PAGE_HEADER_BYTES)) === page.readUInt32LE(8)) {
    return page.readUInt32LE(4);
  }
  return page.equals(ZERO_PAGE) ? 0 : -1;
}

/**
 * Applies into `memory` every page of `manifest` that is newer in the file than in memory, or that
 * `torn` names (it arrived torn; a page applied here leaves the set). Throws PageStoreError if a
 * read fails.
 */
export async function prefetchPass(
  pageFile: PageFile,
  manifest: Manifest,
  memory: GuestPages,
  torn: Set<number>,
  options: PrefetchPassOptions = {},
): Promise<PrefetchPassStats> {
  const runPages = options.runPages ?? DEFAULT_PREFETCH_RUN_PAGES;
  const meta = memory.meta;
  const stats: PrefetchPassStats = {
    round: manifest.round,
    pagesRead: 0,
    pagesApplied: 0,
    pagesTorn: 0,
    pagesStale: 0,
    aborted: false,
  };
  const wanted = (k: number): boolean => {
    const index = manifest.indexes[k] as number;
    if (index >= memory.pageCount) return false;
    return (manifest.versions[k] as number) > (meta[index * 2] as number) || torn.has(index);
  };
  const buffer = Buffer.alloc(runPages * PAGE_SIZE_BYTES);
  let skipped = 0;
  let k = 0;
  while (k < manifest.indexes.length) {
    if (options.signal?.aborted) return { ...stats, aborted: true };
    if (!wanted(k)) {
      k += 1;
      skipped += 1;
      if (skipped % SCAN_ENTRIES_PER_TURN === 0) await yieldToEventLoop();
      continue;
    }
    // Whether a page is wanted is decided just before its run is read, so batches that arrived
    // during the previous read shorten this one.
    const first = manifest.indexes[k] as number;
    let count = 1;
    while (
      count < runPages &&
      k + count < manifest.indexes.length &&
      manifest.indexes[k + count] === first + count &&
      wanted(k + count)
    ) {
      count += 1;
    }
    k += count;
    await pageFile.readPages(first, count, buffer);
    stats.pagesRead += count;
    if (options.signal?.aborted) return { ...stats, aborted: true };
    for (let i = 0; i < count; i += 1)
      applyIfNewer(
        memory,
        torn,
        first + i,
        manifest.versions[k - count + i] as number,
        buffer.subarray(i * PAGE_SIZE_BYTES, (i + 1) * PAGE_SIZE_BYTES),
        stats,
        options.hashes,
      );
  }
  return stats;
}

/**
 * The check and the apply of one page read, with no await in between (see the module comment).
 * `listed` is the version the manifest names; a self-checking page's own header decides instead.
 */
function applyIfNewer(
  memory: GuestPages,
  torn: Set<number>,
  index: number,
  listed: number,
  page: Buffer,
  stats: PrefetchPassStats,
  hashes: PageHashes | undefined,
): void {
  const generation = memory.selfChecking ? checkedGeneration(page, index) : listed;
  if (generation < 0) {
    stats.pagesTorn += 1;
    return;
  }
  const held = memory.meta[index * 2] as number;
  if (generation > held || (generation === held && generation > 0 && torn.has(index))) {
    if (applyHashedPage(memory, hashes, index, page, generation)) torn.delete(index);
    else torn.add(index);
    stats.pagesApplied += 1;
  } else {
    stats.pagesStale += 1;
  }
}

/** Options of a StorePrefetcher; see the DEFAULT_PREFETCH_* constants. */
export interface StorePrefetcherOptions {
  stallMs?: number;
  pollMs?: number;
  runPages?: number;
  /**
   * Prefetch whether or not batches arrive: for a destination that replaced one that crashed, which
   * lacks everything sent before it started. Default false (only while the stream is stalled).
   */
  eager?: boolean;
  /** Where each pass that read pages, and each failed pass (retried at the next poll), is reported. */
  log?: (msg: string) => void;
  /** Where the content hash of every page applied is recorded (the destination's content digest). */
  hashes?: PageHashes;
  /** The migration key, to open a page file sealed at rest. */
  pageFileKey?: PageFileKey;
}

/**
 * Watches the stream of one incoming migration and prefetches from its page file while no batch
 * arrives: one pass each time the newest round manifest changes. Counters add up over all passes.
 */
export class StorePrefetcher {
  /** Pages read from the file, applied, and found torn, over all passes. */
  pagesRead = 0;
  pagesApplied = 0;
  pagesTorn = 0;
  private lastBatchAt = Date.now();
  /** Stamp of the newest manifest a pass went through whole (see round-manifests.ts). */
  private passedStamp: string | undefined;
  private pageFile: Promise<PageFile> | undefined;
  private running: Promise<PrefetchPassStats | undefined> | undefined;
  private controller: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly store: PageStore,
    private readonly migrationId: string,
    private readonly memory: GuestPages,
    private readonly torn: Set<number>,
    private readonly options: StorePrefetcherOptions = {},
  ) {}

  /** Starts watching: after `stallMs` without a batch, passes run, each over a newer manifest. */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => this.poll(), this.options.pollMs ?? DEFAULT_PREFETCH_POLL_MS);
    this.timer.unref();
  }

  /** A batch arrived: the stream works, so a pass under way ends after its read in flight. */
  noteBatch(): void {
    this.lastBatchAt = Date.now();
    if (!this.options.eager) this.controller?.abort();
  }

  private poll(): void {
    if (this.running || this.stopped) return;
    const stalled = Date.now() - this.lastBatchAt >= (this.options.stallMs ?? DEFAULT_PREFETCH_STALL_MS);
    if (!stalled && !this.options.eager) return;
    this.passOverNewest().catch((err: unknown) =>
      this.options.log?.(`prefetch from the page file failed: ${String(err)}`),
    );
  }

  /**
   * Runs one pass over the newest round manifest unless a pass already went through it whole;
   * resolves with its figures, or undefined if there was none or the prefetcher is stopped.
   */
  passOverNewest(): Promise<PrefetchPassStats | undefined> {
    const pass = this.pass();
    this.running = pass;
    const clear = (): void => {
      if (this.running === pass) this.running = undefined;
    };
    pass.then(clear, clear);
    return pass;
  }

  private async pass(): Promise<PrefetchPassStats | undefined> {
    if (this.stopped) return undefined;
    this.pageFile ??= this.store.openPageFile(this.migrationId, this.options.pageFileKey);
    // A failed open is tried again by the next pass.
    const pageFile = await this.pageFile.catch((err: unknown) => {
      this.pageFile = undefined;
      throw err;
    });
    const newest = await pageFile.readNewestRoundManifest(this.passedStamp);
    if (!newest || this.stopped) return undefined;
    const { manifest, stamp } = newest;
    const controller = new AbortController();
    this.controller = controller;
    const runPages = this.options.runPages ?? DEFAULT_PREFETCH_RUN_PAGES;
    const startedAt = performance.now();
    const stats = await prefetchPass(pageFile, manifest, this.memory, this.torn, {
      ...(this.options.hashes ? { hashes: this.options.hashes } : {}),
      signal: controller.signal,
      runPages,
    });
    if (stats.pagesRead > 0)
      this.options.log?.(
        `prefetched from the page file (manifest of round ${manifest.round}): ${stats.pagesApplied} pages applied of ` +
          `${stats.pagesRead} read, ${stats.pagesTorn} torn, ${stats.pagesStale} stale, in ` +
          `${(performance.now() - startedAt).toFixed(0)} ms${stats.aborted ? ', stopped' : ''}`,
      );
    this.pagesRead += stats.pagesRead;
    this.pagesApplied += stats.pagesApplied;
    this.pagesTorn += stats.pagesTorn;
    if (!stats.aborted) this.passedStamp = stamp;
    return stats;
  }

  /** Stops watching and waits for a pass under way to end; nothing is applied after it resolves. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.controller?.abort();
    await this.running?.catch(() => undefined);
    const pageFile = this.pageFile;
    this.pageFile = undefined;
    if (pageFile) await pageFile.then((f) => f.close()).catch(() => undefined);
  }
}
