import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { PAGE_FILE_HEADER_BYTES, PageFile } from '../../store/directory/page-file';
import { readNewestRoundManifest } from '../../store/directory/round-manifests';
import type { Manifest } from '../../store/manifest-format';
import { prefetchPass, StorePrefetcher } from '../../data-plane/store-prefetch';
import { DirectoryPageStore } from '../../store/directory/directory-page-store';

const PAGE_COUNT = 64;
const SEED = 7;

describe('prefetch from the page file while the stream is dead', () => {
  let storeDir: string;
  let source: GuestMemory;
  let writer: PageFile;
  const open: PageFile[] = [];

  beforeEach(async () => {
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-prefetch-'));
    source = GuestMemory.create(PAGE_COUNT);
    writer = await PageFile.create(storeDir, { migrationId: 'm1', vmId: 'vm1', pageCount: PAGE_COUNT });
    open.push(writer);
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((f) => f.close()));
    fs.rmSync(storeDir, { recursive: true, force: true });
  });

  /** The source writes `indexes` at `generation`, syncs them and writes round `round`'s manifest. */
  async function sourceRound(round: number, indexes: readonly number[], generation: number): Promise<void> {
    for (const i of indexes) source.writePage(i, generation, SEED);
    writer.writePages(
      indexes.map((index) => ({ index, version: generation })),
      Buffer.concat(indexes.map((i) => Buffer.from(source.page(i)))),
    );
    const synced = await writer.sync();
    const held = Array.from({ length: PAGE_COUNT }, (_, i) => i).filter((i) => synced[i] !== 0);
    await writer.writeManifest({
      round,
      final: false,
      indexes: Uint32Array.from(held),
      versions: Uint32Array.from(held, (i) => synced[i] as number),
      finalSeq: 0,
      digest: '',
    });
  }

  async function reader(): Promise<PageFile> {
    const file = await PageFile.open(storeDir, 'm1');
    open.push(file);
    return file;
  }

  async function readManifest(): Promise<Manifest> {
    const newest = await readNewestRoundManifest(await reader());
    if (!newest) throw new Error(`no round manifest in ${storeDir}`);
    return newest.manifest;
  }

  /** Overwrites page `index` in the file with bytes that fail the self-check. */
  function tearInFile(index: number): void {
    const fd = fs.openSync(path.join(writer.dir, 'pages.ferry'), 'r+');
    fs.writeSync(fd, Buffer.alloc(16, 0xab), 0, 16, PAGE_FILE_HEADER_BYTES + index * PAGE_SIZE_BYTES + 100);
    fs.closeSync(fd);
  }

  /** Page `index` at `generation` as the source writes it (for a "batch" applied on the destination). */
  function imageOf(index: number, generation: number): Buffer {
    const other = GuestMemory.create(PAGE_COUNT);
    other.writePage(index, generation, SEED);
    return Buffer.from(other.page(index));
  }

  const all = Array.from({ length: PAGE_COUNT }, (_, i) => i);

  it('applies the pages the manifest holds newer than memory, reading only those', async () => {
    await sourceRound(0, all, 1);
    const memory = GuestMemory.create(PAGE_COUNT);
    for (const i of all.slice(0, 40)) memory.applyPage(i, source.page(i));
    for (const i of [3, 17, 30]) tearInFile(i);

    const stats = await prefetchPass(await reader(), await readManifest(), memory, new Set(), { runPages: 8 });

    // Pages 3, 17 and 30 were current in memory; had they been read, they would count as torn.
    expect(stats).toMatchObject({ round: 0, pagesRead: 24, pagesApplied: 24, pagesTorn: 0, aborted: false });
    expect(Buffer.compare(memory.bytes, source.bytes)).toBe(0);
    expect(memory.digest()).toBe(source.digest());
    expect(memory.verifyAll().badPages).toEqual([]);
  });

  it('reads nothing in a second pass over a manifest it already applied', async () => {
    await sourceRound(0, all, 1);
    const memory = GuestMemory.create(PAGE_COUNT);
    const prefetcher = new StorePrefetcher(new DirectoryPageStore(storeDir), 'm1', memory, new Set());
    try {
      expect(await prefetcher.passOverNewest()).toMatchObject({ pagesRead: PAGE_COUNT, pagesApplied: PAGE_COUNT });
      expect(await prefetcher.passOverNewest()).toBeUndefined();
      const again = await prefetchPass(await reader(), await readManifest(), memory, new Set());
      expect(again).toMatchObject({ pagesRead: 0, pagesApplied: 0 });

      await sourceRound(1, [5, 6, 50], 2);
      expect(await prefetcher.passOverNewest()).toMatchObject({ round: 1, pagesRead: 3, pagesApplied: 3 });
      // The manifest of the round under way, rewritten as more of the round became durable.
      await sourceRound(1, [7], 2);
      expect(await prefetcher.passOverNewest()).toMatchObject({ round: 1, pagesRead: 1, pagesApplied: 1 });
      expect(prefetcher.pagesApplied).toBe(PAGE_COUNT + 4);
      expect(memory.digest()).toBe(source.digest());
    } finally {
      await prefetcher.stop();
    }
  });

  it('prefetches by itself once no batch has arrived for the stall time', async () => {
    await sourceRound(0, all, 1);
    const memory = GuestMemory.create(PAGE_COUNT);
    let passed: (msg: string) => void = () => undefined;
    const logged = new Promise<string>((resolve) => (passed = resolve));
    const startedAt = Date.now();
    const prefetcher = new StorePrefetcher(new DirectoryPageStore(storeDir), 'm1', memory, new Set(), {
      stallMs: 50,
      pollMs: 5,
      log: (msg) => passed(msg),
    });
    try {
      prefetcher.start();
      expect(await logged).toMatch(/64 pages applied of 64 read/);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(50);
      expect(memory.digest()).toBe(source.digest());
    } finally {
      await prefetcher.stop();
    }
  });

  it('never regresses a page a batch made newer while its read was in flight', async () => {
    await sourceRound(0, all, 1);
    const memory = GuestMemory.create(PAGE_COUNT);

    const pass = prefetchPass(await reader(), await readManifest(), memory, new Set());
    // The pass is now awaiting its first read: a batch brings generation 3 of page 9 meanwhile.
    expect(memory.applyPage(9, imageOf(9, 3))).toBe(true);
    const stats = await pass;

    expect(stats).toMatchObject({ pagesRead: PAGE_COUNT, pagesApplied: PAGE_COUNT - 1, pagesStale: 1 });
    expect(memory.meta[9 * 2]).toBe(3);
    expect(memory.page(9).equals(imageOf(9, 3))).toBe(true);
    expect(memory.verifyAll().badPages).toEqual([]);
  });

  it('leaves a page the file holds torn for the switchover, and repairs a page that arrived torn', async () => {
    await sourceRound(0, all, 1);
    const memory = GuestMemory.create(PAGE_COUNT);
    for (const i of all) memory.applyPage(i, source.page(i));
    const tornImage = Buffer.from(source.page(20));
    tornImage.writeUInt32LE(0xdeadbeef, 2000);
    const torn = new Set<number>([20]);
    expect(memory.applyPage(20, tornImage)).toBe(false);
    await sourceRound(1, [40], 2);
    tearInFile(40);

    const stats = await prefetchPass(await reader(), await readManifest(), memory, torn);

    expect(stats).toMatchObject({ pagesRead: 2, pagesApplied: 1, pagesTorn: 1 });
    expect(torn.has(20)).toBe(false);
    expect(memory.page(20).equals(source.page(20))).toBe(true);
    expect(memory.meta[40 * 2]).toBe(1);
    expect(memory.checkPage(40)).toBe(true);
  });

  it('stops after the read in flight and applies nothing once stopped', async () => {
    await sourceRound(0, all, 1);
    const applied = (memory: GuestMemory): number => all.filter((i) => memory.meta[i * 2] !== 0).length;
    /** Calls `stop` on the first turn of the event loop after a page was applied (each read yields). */
    const stopAfterFirstRun = (memory: GuestMemory, stop: () => void): void => {
      const check = (): void => {
        if (applied(memory) > 0) stop();
        else setImmediate(check);
      };
      setImmediate(check);
    };

    const aborted = GuestMemory.create(PAGE_COUNT);
    const controller = new AbortController();
    stopAfterFirstRun(aborted, () => controller.abort());
    const stats = await prefetchPass(await reader(), await readManifest(), aborted, new Set(), {
      signal: controller.signal,
      runPages: 4,
    });
    expect(stats.aborted).toBe(true);
    expect(stats.pagesApplied).toBeLessThan(PAGE_COUNT);
    expect(applied(aborted)).toBe(stats.pagesApplied);

    const memory = GuestMemory.create(PAGE_COUNT);
    const prefetcher = new StorePrefetcher(new DirectoryPageStore(storeDir), 'm1', memory, new Set(), { runPages: 4 });
    let stopped: Promise<void> | undefined;
    stopAfterFirstRun(memory, () => {
      stopped = prefetcher.stop();
    });
    expect(await prefetcher.passOverNewest()).toMatchObject({ aborted: true });
    await stopped;
    const appliedAtStop = applied(memory);
    expect(appliedAtStop).toBeLessThan(PAGE_COUNT);
    expect(prefetcher.pagesApplied).toBe(appliedAtStop);
    expect(await prefetcher.passOverNewest()).toBeUndefined();
    expect(applied(memory)).toBe(appliedAtStop);
  });
});
