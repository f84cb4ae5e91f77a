/**
 * Page-by-page comparison of a source memory image taken after the switchover (the source is
 * stunned, so it is the memory at stun) with a destination image taken later, while the guest may
 * already run on the destination. For every page: the same generation must mean the same bytes;
 * a newer generation on the destination must be a page the guest wrote after resuming, so it must
 * check itself; an older generation is lost data.
 */
import { promises as fs } from 'node:fs';
import * as zlib from 'node:zlib';
import { PAGE_HEADER_BYTES, PAGE_SIZE_BYTES } from '../vmm/guest-memory';

/** Outcome of a comparison; `ok` when no page is lost or corrupt. */
export interface MemoryComparison {
  ok: boolean;
  pages: number;
  identical: number;
  /** Pages the guest rewrote on the destination after it resumed (and that check themselves). */
  rewrittenAfterResume: number;
  mismatched: number[];
  /** First few mismatches, described. */
  details: string[];
}

function pageValid(page: Buffer, index: number): boolean {
  const generation = page.readUInt32LE(4);
  if (generation === 0) return page.every((b) => b === 0);
  return page.readUInt32LE(0) === index && zlib.crc32(page.subarray(PAGE_HEADER_BYTES)) === page.readUInt32LE(8);
}

/** Compares two memory images (buffers of whole pages). */
export function compareMemory(source: Buffer, destination: Buffer): MemoryComparison {
  if (source.length !== destination.length) {
    throw new Error(`memory sizes differ: source ${source.length} bytes, destination ${destination.length} bytes`);
  }
  const pages = source.length / PAGE_SIZE_BYTES;
  const result: MemoryComparison = {
    ok: true,
    pages,
    identical: 0,
    rewrittenAfterResume: 0,
    mismatched: [],
    details: [],
  };
  for (let i = 0; i < pages; i += 1) {
    const s = source.subarray(i * PAGE_SIZE_BYTES, (i + 1) * PAGE_SIZE_BYTES);
    const d = destination.subarray(i * PAGE_SIZE_BYTES, (i + 1) * PAGE_SIZE_BYTES);
    const sGen = s.readUInt32LE(4);
    const dGen = d.readUInt32LE(4);
    let problem: string | undefined;
    if (dGen === sGen) {
      if (s.equals(d)) result.identical += 1;
      else problem = `page ${i}: generation ${sGen} on both sides but the bytes differ`;
    } else if (dGen > sGen && pageValid(d, i)) {
      result.rewrittenAfterResume += 1;
    } else {
      problem = `page ${i}: source generation ${sGen}, destination generation ${dGen}${dGen > sGen ? ' and fails its self-check' : ' (older)'}`;
    }
    if (problem !== undefined) {
      result.ok = false;
      result.mismatched.push(i);
      if (result.details.length < 5) result.details.push(problem);
    }
  }
  return result;
}

/**
 * Compares two images that must be equal byte for byte: a real guest's memory at stun and the
 * destination's at resume. Its pages carry no generation, so every differing page is a mismatch.
 */
export function compareMemoryExact(source: Buffer, destination: Buffer): MemoryComparison {
  if (source.length !== destination.length) {
    throw new Error(`memory sizes differ: source ${source.length} bytes, destination ${destination.length} bytes`);
  }
  const pages = source.length / PAGE_SIZE_BYTES;
  const result: MemoryComparison = {
    ok: true,
    pages,
    identical: 0,
    rewrittenAfterResume: 0,
    mismatched: [],
    details: [],
  };
  for (let i = 0; i < pages; i += 1) {
    const at = i * PAGE_SIZE_BYTES;
    if (source.compare(destination, at, at + PAGE_SIZE_BYTES, at, at + PAGE_SIZE_BYTES) === 0) {
      result.identical += 1;
      continue;
    }
    result.ok = false;
    result.mismatched.push(i);
    if (result.details.length < 5) result.details.push(`page ${i}: the bytes differ`);
  }
  return result;
}

/**
 * Compares two memory image files written by the VMMs' `dumpMemory`: by generation (the simulated
 * guest), or byte for byte with `exact`.
 */
export async function compareMemoryFiles(
  sourcePath: string,
  destinationPath: string,
  exact = false,
): Promise<MemoryComparison> {
  const [source, destination] = await Promise.all([fs.readFile(sourcePath), fs.readFile(destinationPath)]);
  return exact ? compareMemoryExact(source, destination) : compareMemory(source, destination);
}
