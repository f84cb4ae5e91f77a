/**
 * What the source reads from guest memory's bookkeeping without touching a page: how many pages
 * are dirty after a round, and the final page table at stun. Both use typed arrays only, since
 * the final table is built while the guest is stunned.
 */
import type { GuestMemory } from '../vmm/guest-memory';

/** Page indexes in ascending order, and each page's generation at the same position. */
export interface FinalPageTable {
  indexes: Uint32Array;
  versions: Uint32Array;
}

/** Counts set bits of the dirty bitmap without clearing it. */
export function countDirty(dirty: Int32Array): number {
  let count = 0;
  for (let i = 0; i < dirty.length; i += 1) {
    let word = Atomics.load(dirty, i);
    while (word !== 0) {
      word &= word - 1;
      count += 1;
    }
  }
  return count;
}

/** Every page of `memory` whose generation is not 0 (a zero page), with that generation. */
export function finalPageTable(memory: GuestMemory): FinalPageTable {
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
