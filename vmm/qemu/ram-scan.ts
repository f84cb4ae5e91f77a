/**
 * The scan of a QEMU guest's RAM file against its shadow copy (see qemu-guest-pages.ts), over a
 * range of pages, as one function that the VMM's main thread and its scan workers both run. The
 * file is compared in chunks (256 KiB stayed in cache best here), where it is mapped (ram-map.ts)
 * or read into a scratch buffer where it is not; a chunk equal to the shadow is skipped whole, else
 * each page is compared, and with `update` a changed page is copied into the shadow and its version
 * raised and crc32 taken in `meta`.
 *
 * Workers share the shadow and `meta` (SharedArrayBuffers) and the file descriptor (threads of one
 * process share descriptors; each maps the file itself); each scans a range of its own, so no two
 * touch the same page.
 */
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';

/** Size of a page (bytes); the same as the guest's. */
const PAGE_BYTES = 4096;
/** Bytes read from the RAM file at a time by a scan (256 KiB). */
export const SCAN_CHUNK_BYTES = 256 * 1024;
/**
 * The version word of a page while a scan rewrites its shadow copy (no version ever takes it): a
 * reader beside the scan (copyVersionedPage) that sees it, or sees the word change across its copy,
 * takes its copy as torn. The word is written with Atomics, so it brackets the copy.
 */
export const VERSION_CHANGING = 0xffffffff;

/** The version after `version`: never 0 (a page never written) or VERSION_CHANGING. */
export function nextVersion(version: number): number {
  const next = (version + 1) >>> 0;
  return next === 0 || next === VERSION_CHANGING ? 1 : next;
}

/** What a scan works on: the RAM file's descriptor, the shadow and meta of every page. */
export interface ScanTarget {
  fd: number;
  shadow: Buffer;
  meta: Uint32Array;
  /** A buffer of SCAN_CHUNK_BYTES for this thread's reads (unused where `ram` is given). */
  scratch: Buffer;
  /** The RAM file mapped into this thread (ram-map.ts), compared in place; else it is read. */
  ram?: Buffer;
}

/** The `length` bytes of the file at `base`: a view of the mapping, or read into `scratch`. */
function chunkAt(target: ScanTarget, base: number, length: number): Buffer {
  if (target.ram) return target.ram.subarray(base, base + length);
  let read = 0;
  while (read < length) {
    const n = fs.readSync(target.fd, target.scratch, read, length - read, base + read);
    if (n === 0) throw new RangeError(`the RAM file ended at byte ${base + read}`);
    read += n;
  }
  return target.scratch;
}

/**
 * Scans pages [first, end): returns the pages whose file content differs from the shadow, in
 * ascending order; with `update`, each of them joins the shadow at a new version. Throws RangeError
 * if the file ends early.
 */
export function scanRange(target: ScanTarget, first: number, end: number, update: boolean): number[] {
  const { shadow, meta } = target;
  const changed: number[] = [];
  const stop = end * PAGE_BYTES;
  for (let base = first * PAGE_BYTES; base < stop; base += SCAN_CHUNK_BYTES) {
    const length = Math.min(SCAN_CHUNK_BYTES, stop - base);
    const chunk = chunkAt(target, base, length);
    if (shadow.compare(chunk, 0, length, base, base + length) === 0) continue;
    for (let offset = 0; offset < length; offset += PAGE_BYTES) {
      const at = base + offset;
      if (shadow.compare(chunk, offset, offset + PAGE_BYTES, at, at + PAGE_BYTES) === 0) continue;
      const index = at / PAGE_BYTES;
      changed.push(index);
      if (!update) continue;
      // The guest may write the page meanwhile: the version and crc32 are of the shadow's copy.
      const version = nextVersion(meta[index * 2] as number);
      Atomics.store(meta, index * 2, VERSION_CHANGING);
      chunk.copy(shadow, at, offset, offset + PAGE_BYTES);
      meta[index * 2 + 1] = crc32(shadow.subarray(at, at + PAGE_BYTES));
      Atomics.store(meta, index * 2, version);
    }
  }
  return changed;
}
