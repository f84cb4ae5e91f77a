/**
 * The scan of a QEMU guest's RAM file against its shadow copy (see qemu-guest-pages.ts), over a
 * range of pages, as one function that the VMM's main thread and its scan workers both run. The
 * file is read in chunks (256 KiB stayed in cache best here); a chunk equal to the shadow is
 * skipped whole, else each page is compared, and with `update` a changed page is copied into the
 * shadow and its version raised and crc32 taken in `meta`.
 *
 * Workers share the shadow and `meta` (SharedArrayBuffers) and the file descriptor (threads of one
 * process share descriptors); each scans a range of its own, so no two touch the same page.
 */
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';

/** Size of a page (bytes); the same as the guest's. */
const PAGE_BYTES = 4096;
/** Bytes read from the RAM file at a time by a scan (256 KiB). */
export const SCAN_CHUNK_BYTES = 256 * 1024;

/** What a scan works on: the RAM file's descriptor, the shadow and meta of every page. */
export interface ScanTarget {
  fd: number;
  shadow: Buffer;
  meta: Uint32Array;
  /** A buffer of SCAN_CHUNK_BYTES for this thread's reads. */
  scratch: Buffer;
}

/**
 * Scans pages [first, end): returns the pages whose file content differs from the shadow, in
 * ascending order; with `update`, each of them joins the shadow at a new version. Throws RangeError
 * if the file ends early.
 */
export function scanRange(target: ScanTarget, first: number, end: number, update: boolean): number[] {
  const { fd, shadow, meta, scratch } = target;
  const changed: number[] = [];
  const stop = end * PAGE_BYTES;
  for (let base = first * PAGE_BYTES; base < stop; base += SCAN_CHUNK_BYTES) {
    const length = Math.min(SCAN_CHUNK_BYTES, stop - base);
    let read = 0;
    while (read < length) {
      const n = fs.readSync(fd, scratch, read, length - read, base + read);
      if (n === 0) throw new RangeError(`the RAM file ended at byte ${base + read}`);
      read += n;
    }
    if (shadow.compare(scratch, 0, length, base, base + length) === 0) continue;
    for (let offset = 0; offset < length; offset += PAGE_BYTES) {
      const at = base + offset;
      if (shadow.compare(scratch, offset, offset + PAGE_BYTES, at, at + PAGE_BYTES) === 0) continue;
      const index = at / PAGE_BYTES;
      changed.push(index);
      if (!update) continue;
      scratch.copy(shadow, at, offset, offset + PAGE_BYTES);
      meta[index * 2] = ((meta[index * 2] as number) + 1) >>> 0 || 1;
      meta[index * 2 + 1] = crc32(scratch.subarray(offset, offset + PAGE_BYTES));
    }
  }
  return changed;
}
