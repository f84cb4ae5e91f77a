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
 * Scans are synchronous (a 128 MiB guest reads in a few tens of milliseconds); the whole file is
 * compared chunk by chunk first, page by page only where a chunk differs.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { PAGE_SIZE_BYTES } from '../guest-memory';
import type { GuestPages } from '../guest-port';

/** Bytes read from the RAM file at a time by a scan (2 MiB). */
export const SCAN_CHUNK_BYTES = 2 * 1024 * 1024;

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE_BYTES);

/** GuestPages over a RAM file; see the module comment. */
export class QemuGuestPages implements GuestPages {
  readonly pageCount: number;
  readonly meta: Uint32Array;
  /** A real guest's page carries no version or self-check of its own. */
  readonly selfChecking = false;
  private readonly shadow: Buffer;
  private readonly scratch = Buffer.allocUnsafeSlow(SCAN_CHUNK_BYTES);
  private fd: number | undefined;
  /** True from the first page applied until the next scan: the shadow is the memory at resume. */
  private keptAtResume = false;

  /**
   * Opens `ramPath` (read and write) as a guest of `pageCount` pages. Throws when the file cannot
   * be opened or is smaller than the guest.
   */
  constructor(
    readonly ramPath: string,
    pageCount: number,
  ) {
    if (!Number.isSafeInteger(pageCount) || pageCount <= 0)
      throw new RangeError(`pageCount must be a positive integer, got ${pageCount}`);
    const fd = fs.openSync(ramPath, 'r+');
    const size = fs.fstatSync(fd).size;
    if (size < pageCount * PAGE_SIZE_BYTES) {
      fs.closeSync(fd);
      throw new RangeError(`RAM file ${ramPath} holds ${size} bytes, less than ${pageCount} pages`);
    }
    this.fd = fd;
    this.pageCount = pageCount;
    this.meta = new Uint32Array(pageCount * 2);
    this.shadow = Buffer.alloc(pageCount * PAGE_SIZE_BYTES);
  }

  /** The shadow's copy of page `index`: its content as of the last scan (no copy). */
  page(index: number): Buffer {
    this.assertIndex(index);
    return this.shadow.subarray(index * PAGE_SIZE_BYTES, (index + 1) * PAGE_SIZE_BYTES);
  }

  /** True if the shadow's copy of page `index` is all zero. */
  isZeroPage(index: number): boolean {
    return this.page(index).equals(ZERO_PAGE);
  }

  /** Scans the file: every page changed since the last scan gets a new version and joins the shadow. */
  collectDirty(): Uint32Array {
    this.keptAtResume = false;
    const changed: number[] = [];
    this.scan((index, offset) => {
      this.scratchPage(offset).copy(this.shadow, index * PAGE_SIZE_BYTES);
      const version = ((this.meta[index * 2] as number) + 1) >>> 0 || 1;
      this.meta[index * 2] = version;
      this.meta[index * 2 + 1] = crc32(this.page(index));
      changed.push(index);
    });
    return Uint32Array.from(changed);
  }

  /** Scans the file and counts the pages changed since the last scan, leaving the shadow as it is. */
  pendingDirtyCount(): number {
    let count = 0;
    this.scan(() => (count += 1));
    return count;
  }

  /** Writes `src` into page `index` of the file and records `version` for it. */
  applyPage(index: number, src: Buffer, version: number): boolean {
    this.assertIndex(index);
    if (src.length !== PAGE_SIZE_BYTES)
      throw new RangeError(`page source must be ${PAGE_SIZE_BYTES} bytes, got ${src.length}`);
    fs.writeSync(this.openFd(), src, 0, PAGE_SIZE_BYTES, index * PAGE_SIZE_BYTES);
    src.copy(this.shadow, index * PAGE_SIZE_BYTES);
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
  verifyAll(): { badPages: number[]; checked: number } {
    const badPages: number[] = [];
    this.scan((index) => badPages.push(index));
    return { badPages, checked: this.pageCount };
  }

  /** Copies the whole RAM file (read through the open descriptor: its name may be gone) to `path`; resolves to the bytes written. */
  async dumpTo(path: string): Promise<number> {
    const total = this.pageCount * PAGE_SIZE_BYTES;
    const chunk = Buffer.allocUnsafe(SCAN_CHUNK_BYTES);
    const out = await fs.promises.open(path, 'w');
    try {
      for (let at = 0; at < total; at += SCAN_CHUNK_BYTES) {
        const length = Math.min(SCAN_CHUNK_BYTES, total - at);
        this.readFully(chunk, length, at);
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

  /** Closes the file; the object is unusable afterwards. Idempotent. */
  close(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }

  /** Calls `onChanged(index, offsetInScratch)` for every page whose file content differs from the shadow. */
  private scan(onChanged: (index: number, offset: number) => void): void {
    const total = this.pageCount * PAGE_SIZE_BYTES;
    for (let base = 0; base < total; base += SCAN_CHUNK_BYTES) {
      const length = Math.min(SCAN_CHUNK_BYTES, total - base);
      this.readFully(this.scratch, length, base);
      if (this.shadow.compare(this.scratch, 0, length, base, base + length) === 0) continue;
      for (let offset = 0; offset < length; offset += PAGE_SIZE_BYTES) {
        if (
          this.shadow.compare(
            this.scratch,
            offset,
            offset + PAGE_SIZE_BYTES,
            base + offset,
            base + offset + PAGE_SIZE_BYTES,
          ) !== 0
        )
          onChanged((base + offset) / PAGE_SIZE_BYTES, offset);
      }
    }
  }

  /** Reads `length` bytes of the file from `position` into the start of `target`. */
  private readFully(target: Buffer, length: number, position: number): void {
    const fd = this.openFd();
    let read = 0;
    while (read < length) {
      const n = fs.readSync(fd, target, read, length - read, position + read);
      if (n === 0) throw new RangeError(`RAM file ${this.ramPath} ended at byte ${position + read}`);
      read += n;
    }
  }

  private scratchPage(offset: number): Buffer {
    return this.scratch.subarray(offset, offset + PAGE_SIZE_BYTES);
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
