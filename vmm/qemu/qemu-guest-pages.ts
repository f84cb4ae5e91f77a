/**
 * The guest port's pages (vmm/guest-port.ts) over a QEMU guest's RAM file: QEMU maps the file
 * shared (`memory-backend-file,share=on`), so this process reads and writes the guest's memory
 * through the file, while the guest runs.
 *
 * Source side. A guest page holds only the guest's bytes and QEMU exposes no dirty log under TCG,
 * so this side keeps a shadow copy: the content of every page as the last scan saw it. A scan reads
 * the file in chunks and compares each page against the shadow; a page that differs is copied into
 * the shadow and its version goes up by one. The engine sends the shadow (`page()`), never the live
 * file, so a page's bytes and its version always belong together, whatever the guest writes
 * meanwhile; a write after the scan is found by the next one. The last scan runs with QEMU stopped,
 * which makes what the destination gets exact by construction.
 *
 * Destination side. `applyPage` writes the page into the file at its offset, into the shadow, and
 * records the version the source sent with it. A page the engine never applies stays zero, as the
 * sparse file starts. Until the next scan (the VM's next migration away), the shadow is therefore
 * the memory the guest held when it first ran here: `dumpAtResumeTo` writes it out, so a migration
 * can be checked page by page against the stunned source although the guest already rewrote its
 * memory here.
 *
 * Scans run on `scanThreads` worker threads (default 2, one per core here), each over a slice of
 * the pages (ram-scan.ts); the last scan is inside the downtime. With `scanThreads: 0` they run on
 * the calling thread.
 *
 * The file is mapped into the process where the native module of ram-map.ts can be had (`ramAccess`
 * 'mapped'): scans compare it in place and the destination copies pages into it (the round-end
 * scans of a running 1 GiB guest took 64-123 ms on two threads here; 65 ms is the floor a C
 * program measured). Elsewhere it is read and written with read(2) and write(2) ('read-write'),
 * which behaves the same, slower (0.22-0.33 s per GiB scanned).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { PAGE_SIZE_BYTES } from '../guest-memory';
import type { GuestPages } from '../guest-port';
import { loadRamMap } from './ram-map';
import { SCAN_CHUNK_BYTES, scanRange, VERSION_CHANGING, type ScanTarget } from './ram-scan';
import type { ScanReply, ScanRequest, ScanWorkerData } from './ram-scan-worker';

/** Worker threads a scan uses unless told otherwise. */
export const DEFAULT_SCAN_THREADS = 2;
/** A scan is split no finer than this many pages per thread (4 MiB). */
const MIN_PAGES_PER_THREAD = 1024;

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE_BYTES);

/** Options of QemuGuestPages. */
export interface QemuGuestPagesOptions {
  /** Worker threads a scan runs on (0: the calling thread); default DEFAULT_SCAN_THREADS. */
  scanThreads?: number;
  /** Map the file (ram-map.ts) where possible; default true. False reads and writes it. */
  mapRam?: boolean;
}

/** A scan worker and its pending requests. */
interface ScanWorker {
  worker: Worker;
  pending: Map<number, { resolve(changed: Uint32Array): void; reject(err: Error): void }>;
}

/** GuestPages over a RAM file; see the module comment. */
export class QemuGuestPages implements GuestPages {
  readonly pageCount: number;
  readonly meta: Uint32Array;
  /** A real guest's page carries no version or self-check of its own. */
  readonly selfChecking = false;
  /** No dirty log: every scan compares the whole file. */
  readonly scansForDirty = true;
  /** How this process reaches the file: mapped into it, or through read(2) and write(2). */
  readonly ramAccess: 'mapped' | 'read-write';
  /** Why the file is not mapped (ramAccess 'read-write' although mapping was asked for). */
  readonly ramAccessNote: string | undefined;
  private readonly shadow: Buffer;
  /** The file mapped into this thread (ramAccess 'mapped'); dropped at close, unmapped when collected. */
  private ram: Buffer | undefined;
  private readonly target: ScanTarget;
  private readonly workers: ScanWorker[] = [];
  private nextRequest = 0;
  private fd: number | undefined;
  /** True from the first page applied until the next scan: the shadow is the memory at resume. */
  private keptAtResume = false;
  /** Scans run one at a time: two at once would race on the shadow. */
  private scanning: Promise<unknown> = Promise.resolve();

  /**
   * Opens `ramPath` (read and write) as a guest of `pageCount` pages. Throws when the file cannot
   * be opened or is smaller than the guest.
   */
  constructor(
    readonly ramPath: string,
    pageCount: number,
    options: QemuGuestPagesOptions = {},
  ) {
    if (!Number.isSafeInteger(pageCount) || pageCount <= 0)
      throw new RangeError(`pageCount must be a positive integer, got ${pageCount}`);
    const threads = options.scanThreads ?? DEFAULT_SCAN_THREADS;
    if (!Number.isSafeInteger(threads) || threads < 0 || threads > 64)
      throw new RangeError(`scanThreads must be an integer from 0 to 64, got ${threads}`);
    const fd = fs.openSync(ramPath, 'r+');
    const size = fs.fstatSync(fd).size;
    if (size < pageCount * PAGE_SIZE_BYTES) {
      fs.closeSync(fd);
      throw new RangeError(`RAM file ${ramPath} holds ${size} bytes, less than ${pageCount} pages`);
    }
    this.fd = fd;
    this.pageCount = pageCount;
    const bytes = pageCount * PAGE_SIZE_BYTES;
    const mapping = options.mapRam === false ? undefined : loadRamMap();
    try {
      this.ram = typeof mapping === 'function' ? mapping(fd, bytes, true) : undefined;
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    this.ramAccess = this.ram ? 'mapped' : 'read-write';
    this.ramAccessNote = mapping instanceof Error ? mapping.message : undefined;
    const sharedMeta = new SharedArrayBuffer(pageCount * 8);
    const sharedShadow = new SharedArrayBuffer(bytes);
    this.meta = new Uint32Array(sharedMeta);
    this.shadow = Buffer.from(sharedShadow);
    this.target = {
      fd,
      shadow: this.shadow,
      meta: this.meta,
      scratch: Buffer.allocUnsafeSlow(SCAN_CHUNK_BYTES),
      ...(this.ram ? { ram: this.ram } : {}),
    };
    const data: ScanWorkerData = {
      fd,
      shadow: sharedShadow,
      meta: sharedMeta,
      ...(this.ram ? { mapBytes: bytes } : {}),
    };
    for (let i = 0; i < threads; i += 1) this.workers.push(this.startWorker(data));
  }

  /** The shadow's copy of page `index`: its content as of the last scan (no copy). */
  page(index: number): Buffer {
    this.assertIndex(index);
    return this.shadow.subarray(index * PAGE_SIZE_BYTES, (index + 1) * PAGE_SIZE_BYTES);
  }

  /**
   * Copies the shadow's page `index` into `target` and returns its version, or -1 if a scan rewrote
   * the page during the copy (see VERSION_CHANGING): a store's uploads read pages this way while
   * scans run on the workers.
   */
  copyVersionedPage(index: number, target: Buffer): number {
    this.assertIndex(index);
    const before = Atomics.load(this.meta, index * 2);
    if (before === VERSION_CHANGING) return -1;
    this.shadow.copy(target, 0, index * PAGE_SIZE_BYTES, (index + 1) * PAGE_SIZE_BYTES);
    return Atomics.load(this.meta, index * 2) === before ? before : -1;
  }

  /**
   * Destination side, before any page arrives: faults in the shadow and, where it is mapped, the
   * RAM file (one write of a zero byte per page, which leaves both zero, as they start), so that
   * receiving a page later costs a copy rather than two page faults and two kernel zero-fills.
   * Like QEMU's -mem-prealloc on a migration target; the simulated guest does the same.
   */
  prefault(): void {
    for (let at = 0; at < this.shadow.length; at += PAGE_SIZE_BYTES) this.shadow[at] = 0;
    const ram = this.ram;
    if (ram) for (let at = 0; at < ram.length; at += PAGE_SIZE_BYTES) ram[at] = 0;
  }

  /** True if the shadow's copy of page `index` is all zero. */
  isZeroPage(index: number): boolean {
    return this.page(index).equals(ZERO_PAGE);
  }

  /** Scans the file: every page changed since the last scan gets a new version and joins the shadow. */
  collectDirty(): Promise<Uint32Array> {
    this.keptAtResume = false;
    return this.scan(true);
  }

  /** Scans the file and counts the pages changed since the last scan, leaving the shadow as it is. */
  async pendingDirtyCount(): Promise<number> {
    return (await this.scan(false)).length;
  }

  /** Writes `src` into page `index` of the file and records `version` for it. */
  applyPage(index: number, src: Buffer, version: number): boolean {
    this.assertIndex(index);
    if (src.length !== PAGE_SIZE_BYTES)
      throw new RangeError(`page source must be ${PAGE_SIZE_BYTES} bytes, got ${src.length}`);
    const at = index * PAGE_SIZE_BYTES;
    if (this.ram) {
      this.openFd();
      src.copy(this.ram, at);
    } else {
      fs.writeSync(this.openFd(), src, 0, PAGE_SIZE_BYTES, at);
    }
    src.copy(this.shadow, at);
    this.keptAtResume = true;
    const zero = version === 0 && src.equals(ZERO_PAGE);
    this.meta[index * 2] = zero ? 0 : version >>> 0;
    this.meta[index * 2 + 1] = zero ? 0 : crc32(src);
    return true;
  }

  /** sha256 (hex) over `meta`. */
  digest(): string {
    return createHash('sha256')
      .update(new Uint8Array(this.meta.buffer, this.meta.byteOffset, this.meta.byteLength))
      .digest('hex');
  }

  /**
   * Compares the file against what this side last saw or wrote of every page (the shadow): a page
   * that differs is bad. On a destination before its guest runs, and on a paused source right after
   * a scan, every page must match; a running guest's own writes make pages differ.
   */
  async verifyAll(): Promise<{ badPages: number[]; checked: number }> {
    return { badPages: Array.from(await this.scan(false)), checked: this.pageCount };
  }

  /** Copies the whole RAM file (read through the open descriptor: its name may be gone) to `path`; resolves to the bytes written. */
  async dumpTo(path: string): Promise<number> {
    const total = this.pageCount * PAGE_SIZE_BYTES;
    if (this.ram) {
      this.openFd();
      await fs.promises.writeFile(path, this.ram);
      return total;
    }
    const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
    const out = await fs.promises.open(path, 'w');
    try {
      for (let at = 0; at < total; at += SCAN_CHUNK_BYTES) {
        const length = Math.min(SCAN_CHUNK_BYTES, total - at);
        let read = 0;
        while (read < length) {
          const n = fs.readSync(this.openFd(), chunk, read, length - read, at + read);
          if (n === 0) throw new RangeError(`RAM file ${this.ramPath} ended at byte ${at + read}`);
          read += n;
        }
        await out.write(chunk, 0, length, at);
      }
    } finally {
      await out.close();
    }
    return total;
  }

  /** Writes the memory as it was when the guest first ran here (see the module comment). */
  async dumpAtResumeTo(path: string): Promise<number> {
    if (!this.keptAtResume)
      throw new Error('no image of memory at resume is kept: no migration came in, or a scan has run since');
    await fs.promises.writeFile(path, this.shadow);
    return this.shadow.length;
  }

  /** Stops the scan workers and closes the file; the object is unusable afterwards. Idempotent. */
  close(): void {
    for (const { worker } of this.workers.splice(0)) void worker.terminate();
    this.ram = undefined;
    delete this.target.ram;
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }

  /** The pages whose file content differs from the shadow, ascending; see scanRange. One scan at a time. */
  private scan(update: boolean): Promise<Uint32Array> {
    const run = this.scanning.then(() => this.scanNow(update));
    this.scanning = run.catch(() => undefined);
    return run;
  }

  private async scanNow(update: boolean): Promise<Uint32Array> {
    this.openFd();
    const threads = Math.min(this.workers.length, Math.ceil(this.pageCount / MIN_PAGES_PER_THREAD));
    if (threads === 0) return Uint32Array.from(scanRange(this.target, 0, this.pageCount, update));
    const per = Math.ceil(this.pageCount / threads);
    const parts = await Promise.all(
      this.workers
        .slice(0, threads)
        .map((w, i) => this.ask(w, i * per, Math.min(this.pageCount, (i + 1) * per), update)),
    );
    const changed = new Uint32Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      changed.set(part, at);
      at += part.length;
    }
    return changed;
  }

  private ask(w: ScanWorker, first: number, end: number, update: boolean): Promise<Uint32Array> {
    const id = (this.nextRequest += 1);
    return new Promise((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      const request: ScanRequest = { id, first, end, update };
      w.worker.postMessage(request);
    });
  }

  private startWorker(data: ScanWorkerData): ScanWorker {
    const worker = new Worker(path.join(__dirname, 'ram-scan-worker.js'), { workerData: data });
    // A scan worker never keeps the VMM alive on its own.
    worker.unref();
    const w: ScanWorker = { worker, pending: new Map() };
    const failAll = (err: Error): void => {
      for (const p of w.pending.values()) p.reject(err);
      w.pending.clear();
    };
    worker.on('message', (reply: ScanReply) => {
      const p = w.pending.get(reply.id);
      w.pending.delete(reply.id);
      if ('error' in reply) p?.reject(new Error(`scanning ${this.ramPath}: ${reply.error}`));
      else p?.resolve(reply.changed);
    });
    worker.on('error', (err) => failAll(err));
    worker.on('exit', (code) => failAll(new Error(`a scan worker of ${this.ramPath} exited with code ${code}`)));
    return w;
  }

  private openFd(): number {
    if (this.fd === undefined) throw new Error(`RAM file ${this.ramPath} is closed`);
    return this.fd;
  }

  private assertIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.pageCount)
      throw new RangeError(`page index must be an integer in [0, ${this.pageCount}), got ${index}`);
  }
}
