/**
 * Guest RAM files of QEMU tests, read and written the way ferry's page engine will: in place with
 * pread/pwrite (a QEMU has the file mapped, so it must never be truncated or replaced), compared
 * page by page.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

const PAGE_BYTES = 4096;
const CHUNK_BYTES = 4 * 1024 * 1024;

function forEachChunk(file: string, visit: (chunk: Buffer, offset: number) => void): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    for (let offset = 0; ;) {
      const n = fs.readSync(fd, buffer, 0, CHUNK_BYTES, offset);
      if (n === 0) break;
      visit(buffer.subarray(0, n), offset);
      offset += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** SHA-256 of the file's content, hex. */
export function hashFile(file: string): string {
  const hash = createHash('sha256');
  forEachChunk(file, (chunk) => hash.update(chunk));
  return hash.digest('hex');
}

/** Copies `from` into `to` in place (same size expected), chunk by chunk with pwrite. */
export function copyInPlace(from: string, to: string): void {
  const fd = fs.openSync(to, 'r+');
  try {
    forEachChunk(from, (chunk, offset) => {
      fs.writeSync(fd, chunk, 0, chunk.length, offset);
    });
  } finally {
    fs.closeSync(fd);
  }
}

/** Indexes of the 4 KiB pages that differ between two files of the same size (sizes must match). */
export function differingPages(a: string, b: string): number[] {
  const sizeA = fs.statSync(a).size;
  const sizeB = fs.statSync(b).size;
  if (sizeA !== sizeB) throw new Error(`RAM files differ in size: ${a} ${sizeA} bytes, ${b} ${sizeB} bytes`);
  const differing: number[] = [];
  const fdB = fs.openSync(b, 'r');
  try {
    const other = Buffer.allocUnsafe(CHUNK_BYTES);
    forEachChunk(a, (chunk, offset) => {
      fs.readSync(fdB, other, 0, chunk.length, offset);
      for (let p = 0; p < chunk.length; p += PAGE_BYTES) {
        if (chunk.compare(other, p, p + PAGE_BYTES, p, p + PAGE_BYTES) !== 0) differing.push((offset + p) / PAGE_BYTES);
      }
    });
  } finally {
    fs.closeSync(fdB);
  }
  return differing;
}

/** Number of 4 KiB pages of the file that are not all zeros. */
export function nonZeroPages(file: string): number {
  const zero = Buffer.alloc(PAGE_BYTES);
  let count = 0;
  forEachChunk(file, (chunk) => {
    for (let p = 0; p < chunk.length; p += PAGE_BYTES) if (!zero.equals(chunk.subarray(p, p + PAGE_BYTES))) count += 1;
  });
  return count;
}

/** Whether a 4 KiB page looks like uniform random bytes: every byte value present, none above 48 times. */
function looksRandom(page: Buffer): boolean {
  const counts = new Uint16Array(256);
  for (const byte of page) counts[byte] = (counts[byte] ?? 0) + 1;
  return counts.every((n) => n > 0 && n <= 48);
}

/**
 * Pages of `file` whose bytes look random and are the same in `earlier` (a copy of the file taken
 * before): for a memwriter guest, mostly its cold buffer and its hash table.
 */
export function steadyRandomPages(file: string, earlier: Buffer): number[] {
  const pages: number[] = [];
  forEachChunk(file, (chunk, offset) => {
    for (let p = 0; p < chunk.length; p += PAGE_BYTES) {
      const page = chunk.subarray(p, p + PAGE_BYTES);
      if (looksRandom(page) && page.equals(earlier.subarray(offset + p, offset + p + PAGE_BYTES)))
        pages.push((offset + p) / PAGE_BYTES);
    }
  });
  return pages;
}

/** Inverts one byte in the middle of each of `pages` of `file`, in place. */
export function flipBytes(file: string, pages: readonly number[]): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    for (const page of pages) {
      const at = page * PAGE_BYTES + PAGE_BYTES / 2;
      fs.readSync(fd, byte, 0, 1, at);
      byte[0] = (byte[0] ?? 0) ^ 0xff;
      fs.writeSync(fd, byte, 0, 1, at);
    }
  } finally {
    fs.closeSync(fd);
  }
}
