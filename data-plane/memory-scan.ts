/**
 * What the source reads from guest memory's bookkeeping without touching a page: the final page
 * table at stun. It uses typed arrays only, since it is built while the guest is stunned.
 */
import type { GuestPages } from '../vmm/guest-port';

/** Page indexes in ascending order, and each page's generation at the same position. */
export interface FinalPageTable {
  indexes: Uint32Array;
  versions: Uint32Array;
}

/** The union of two ascending lists of page indexes, ascending, each index once. */
export function mergePageLists(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length || j < b.length) {
    const x = i < a.length ? (a[i] as number) : Infinity;
    const y = j < b.length ? (b[j] as number) : Infinity;
    const next = Math.min(x, y);
    if (x === next) i += 1;
    if (y === next) j += 1;
    out[n] = next;
    n += 1;
  }
  return out.subarray(0, n);
}

/** Every page of `memory` whose generation is not 0 (a zero page), with that generation. */
export function finalPageTable(memory: GuestPages): FinalPageTable {
  const meta = memory.meta;
  const pageCount = memory.pageCount;
  let count = 0;
  for (let i = 0; i < pageCount; i += 1) if (meta[i * 2] !== 0) count += 1;
  const indexes = new Uint32Array(count);
  const versions = new Uint32Array(count);
  let k = 0;
  for (let i = 0; i < pageCount; i += 1) {
    const generation = meta[i * 2] as number;
    if (generation === 0) continue;
    indexes[k] = i;
    versions[k] = generation;
    k += 1;
  }
  return { indexes, versions };
}
