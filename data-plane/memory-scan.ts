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
