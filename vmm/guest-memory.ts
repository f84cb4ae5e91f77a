/**
 * Guest memory of a simulated VM: N pages of 4 KiB in a SharedArrayBuffer, per-page metadata
 * (generation and crc32) and a dirty bitmap updated with Atomics, shared between the VMM's main
 * thread and its vCPU worker thread.
 *
 * Every non-zero page checks itself: bytes [0,4) hold the page index, [4,8) the generation (how
 * many times the guest wrote it), [8,12) the crc32 of bytes [12,4096), all little-endian. The zero
 * page is valid too. `meta` mirrors (generation, crc) of every page, so a digest of `meta` is a
 * cheap fingerprint of the whole memory: equal digests and every page self-checking on both sides
 * means identical memory.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { PAGE_SIZE_BYTES } from '../model/guest';
import type { GuestPages } from './guest-port';

export { PAGE_SIZE_BYTES };
/** Size of the self-check header at the start of each non-zero page (bytes). */
export const PAGE_HEADER_BYTES = 12;

const WORDS_PER_PAGE = PAGE_SIZE_BYTES / 4;
const HEADER_WORDS = PAGE_HEADER_BYTES / 4;
const ZERO_PAGE = Buffer.alloc(PAGE_SIZE_BYTES);

/** The SharedArrayBuffers behind a GuestMemory, to open the same memory in a worker thread. */
export interface GuestMemoryShared {
  memory: SharedArrayBuffer;
  meta: SharedArrayBuffer;
  dirty: SharedArrayBuffer;
  pageCount: number;
}

/** Murmur3's finaliser: spreads every input bit over the whole word. */
function fmix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Guest memory shared between threads; see the module comment for the page format. */
export class GuestMemory implements GuestPages {
  /** Every page carries its version (generation) and crc32 in its header. */
  readonly selfChecking = true;
  /** Number of pages. */
  readonly pageCount: number;
  /** Buffer view over the whole memory (pageCount × 4096 bytes), no copy. */
  readonly bytes: Buffer;
  /** Two words per page: [generation, crc32]; every writer (writePage, applyPage) keeps it current. */
  readonly meta: Uint32Array;
  /** Dirty bitmap, bit (i & 31) of word (i >>> 5) for page i; only touched with Atomics. */
  readonly dirty: Int32Array;
  private readonly words: Uint32Array;
  private readonly sharedBuffers: GuestMemoryShared;

  private constructor(shared: GuestMemoryShared) {
    this.sharedBuffers = shared;
    this.pageCount = shared.pageCount;
    this.bytes = Buffer.from(shared.memory);
    this.words = new Uint32Array(shared.memory);
    this.meta = new Uint32Array(shared.meta);
    this.dirty = new Int32Array(shared.dirty);
  }

  /**
   * Allocates zeroed memory of `pageCount` pages (each 4096 bytes) in SharedArrayBuffers.
   * Throws RangeError unless pageCount is a positive integer.
   */
  static create(pageCount: number): GuestMemory {
    if (!Number.isSafeInteger(pageCount) || pageCount <= 0) {
      throw new RangeError(`pageCount must be a positive integer, got ${pageCount}`);
    }
    return new GuestMemory({
      memory: new SharedArrayBuffer(pageCount * PAGE_SIZE_BYTES),
      meta: new SharedArrayBuffer(pageCount * 8),
      dirty: new SharedArrayBuffer(Math.ceil(pageCount / 32) * 4),
      pageCount,
    });
  }

  /** Opens memory created elsewhere (in another thread) from its shared buffers; no copy. */
  static fromShared(shared: GuestMemoryShared): GuestMemory {
    const { pageCount } = shared;
    if (
      shared.memory.byteLength !== pageCount * PAGE_SIZE_BYTES ||
      shared.meta.byteLength !== pageCount * 8 ||
      shared.dirty.byteLength !== Math.ceil(pageCount / 32) * 4
    ) {
      throw new RangeError(`shared buffers do not match pageCount ${pageCount}`);
    }
    return new GuestMemory(shared);
  }

  /** Touches every page of guest memory (writing a zero byte into a zeroed page) so the kernel backs it now. */
  prefault(): void {
    const bytes = this.bytes;
    for (let offset = 0; offset < bytes.length; offset += PAGE_SIZE_BYTES) bytes[offset] = 0;
  }

  /** The shared buffers, to hand to `fromShared` in a worker thread. */
  shared(): GuestMemoryShared {
    return { ...this.sharedBuffers };
  }

  /** A 4096-byte view of page `index` (no copy). Throws RangeError for an index out of range. */
  page(index: number): Buffer {
    this.assertIndex(index);
    return this.bytes.subarray(index * PAGE_SIZE_BYTES, (index + 1) * PAGE_SIZE_BYTES);
  }

  /**
   * Writes page `index` as the guest would: content [12,4096) is pseudo-random (incompressible)
   * and determined by (seed, index, generation); then the header, then `meta`, then the dirty bit.
   * The order matters: the sender clears dirty bits before it reads pages, so a write that
   * overlaps a read is marked dirty again and resent. Throws RangeError for a bad index.
   */
  writePage(index: number, generation: number, seed: number): void {
    this.assertIndex(index);
    const words = this.words;
    const first = index * WORDS_PER_PAGE;
    let s = fmix32(seed ^ fmix32(index ^ fmix32(generation + 0x9e3779b9))) || 1;
    for (let w = first + HEADER_WORDS, end = first + WORDS_PER_PAGE; w < end; w += 1) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      words[w] = s;
    }
    const offset = index * PAGE_SIZE_BYTES;
    const crc = crc32(this.bytes.subarray(offset + PAGE_HEADER_BYTES, offset + PAGE_SIZE_BYTES));
    this.bytes.writeUInt32LE(index >>> 0, offset);
    this.bytes.writeUInt32LE(generation >>> 0, offset + 4);
    this.bytes.writeUInt32LE(crc, offset + 8);
    this.meta[index * 2] = generation;
    this.meta[index * 2 + 1] = crc;
    this.markDirty(index);
  }

  /** Sets the dirty bit of page `index` (Atomics.or, safe against concurrent collectDirty). */
  markDirty(index: number): void {
    this.assertIndex(index);
    Atomics.or(this.dirty, index >>> 5, 1 << (index & 31));
  }

  /**
   * Atomically takes and clears the whole dirty bitmap (one Atomics.exchange per non-zero word)
   * and returns the dirty page indices in ascending order. A page written during the call is
   * either in the result or still dirty afterwards, never lost.
   */
  collectDirty(): Uint32Array {
    const dirty = this.dirty;
    const taken = new Int32Array(dirty.length);
    let count = 0;
    for (let w = 0; w < dirty.length; w += 1) {
      if (Atomics.load(dirty, w) === 0) continue;
      const bits = Atomics.exchange(dirty, w, 0);
      taken[w] = bits;
      count += popcount32(bits);
    }
    const result = new Uint32Array(count);
    let n = 0;
    for (let w = 0; w < taken.length; w += 1) {
      let bits = taken[w] ?? 0;
      while (bits !== 0) {
        const lowest = bits & -bits;
        result[n] = w * 32 + (31 - Math.clz32(lowest));
        n += 1;
        bits ^= lowest;
      }
    }
    return result;
  }

  /** How many pages are dirty now (the bitmap is read, not cleared). */
  pendingDirtyCount(): number {
    let count = 0;
    for (let w = 0; w < this.dirty.length; w += 1) count += popcount32(Atomics.load(this.dirty, w));
    return count;
  }

  /** Marks every page dirty (bits past the last page stay clear). */
  markAllDirty(): void {
    const full = Math.floor(this.pageCount / 32);
    for (let w = 0; w < full; w += 1) Atomics.store(this.dirty, w, -1);
    const rest = this.pageCount % 32;
    if (rest !== 0) Atomics.or(this.dirty, full, (2 ** rest - 1) | 0);
  }

  /** True if page `index` is all zero bytes (never written). */
  isZeroPage(index: number): boolean {
    return this.page(index).equals(ZERO_PAGE);
  }

  /**
   * Self-check of page `index`: a zero page is valid; any other page is valid if its header names
   * this index and its header crc equals the crc32 of bytes [12,4096). A torn page (content and
   * header from different writes) fails.
   */
  checkPage(index: number): boolean {
    const page = this.page(index);
    if (page.readUInt32LE(0) === index && crc32(page.subarray(PAGE_HEADER_BYTES)) === page.readUInt32LE(8)) {
      return true;
    }
    return page.equals(ZERO_PAGE);
  }

  /**
   * Destination side: copies the 4096 bytes of `src` into page `index`, sets meta to the header's
   * generation and the crc computed here (a zero page gets [0, 0]) and returns the page's
   * self-check. A page torn by a guest write during pre-copy returns false; the caller keeps track
   * of it (it is dirty on the source and will come again). `_version` is not needed: the header
   * holds it. Throws RangeError for a bad index or a `src` that is not 4096 bytes.
   */
  applyPage(index: number, src: Buffer, _version?: number): boolean {
    if (src.length !== PAGE_SIZE_BYTES) {
      throw new RangeError(`page source must be ${PAGE_SIZE_BYTES} bytes, got ${src.length}`);
    }
    const page = this.page(index);
    src.copy(page);
    if (page.equals(ZERO_PAGE)) {
      this.meta[index * 2] = 0;
      this.meta[index * 2 + 1] = 0;
      return true;
    }
    const crc = crc32(page.subarray(PAGE_HEADER_BYTES));
    this.meta[index * 2] = page.readUInt32LE(4);
    this.meta[index * 2 + 1] = crc;
    return page.readUInt32LE(0) === index && page.readUInt32LE(8) === crc;
  }

  /**
   * sha256 (hex) over `meta`, i.e. over (generation, crc) of every page: 8 bytes per page, so
   * about 2 MiB for 1 GiB of memory, cheap enough to take between stun and resume.
   */
  digest(): string {
    const meta = this.meta;
    return createHash('sha256')
      .update(new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength))
      .digest('hex');
  }

  /**
   * Full self-check of every page, plus agreement of `meta` with each page header. Reads all of
   * memory: for tests and after a migration, never on the downtime path.
   */
  verifyAll(): { badPages: number[]; checked: number } {
    const badPages: number[] = [];
    for (let i = 0; i < this.pageCount; i += 1) {
      const page = this.page(i);
      const zero = page.equals(ZERO_PAGE);
      const metaOk = zero
        ? this.meta[i * 2] === 0 && this.meta[i * 2 + 1] === 0
        : this.meta[i * 2] === page.readUInt32LE(4) && this.meta[i * 2 + 1] === page.readUInt32LE(8);
      if (!metaOk || !this.checkPage(i)) badPages.push(i);
    }
    return { badPages, checked: this.pageCount };
  }

  /** Writes the whole memory into the file at `path`; resolves to the bytes written. */
  async dumpTo(path: string): Promise<number> {
    await writeFile(path, this.bytes);
    return this.bytes.length;
  }

  private assertIndex(index: number): void {
    if (!Number.isInteger(index) || index < 0 || index >= this.pageCount) {
      throw new RangeError(`page index must be an integer in [0, ${this.pageCount}), got ${index}`);
    }
  }
}

function popcount32(value: number): number {
  let v = value - ((value >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}
