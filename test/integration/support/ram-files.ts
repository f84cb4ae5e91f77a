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
