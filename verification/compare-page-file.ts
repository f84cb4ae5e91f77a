/**
 * When the source VMM is gone after a migration (it died during the switchover), the page file is
 * the record of its memory at stun: the final manifest lists every non-zero page with its
 * generation, and the file holds those pages. This check rebuilds that memory from the file and
 * compares it page by page with the destination's (see compare-memory.ts). It needs the page file
 * kept after the migration (`keepPageFile`).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import type { PageFileKey, PageStore } from '../store/page-store';
import { compareMemory, type MemoryComparison } from './compare-memory';
import type { MemoryDumper } from './compare-migrated';

/** Pages read at once (one ranged GET per run on S3, where a read per page would take minutes). */
const READ_RUN_PAGES = 256;
/** Runs read at the same time. */
const PARALLEL_READS = 4;

/**
 * The memory at stun as the page file records it: pages of the final manifest, zero elsewhere.
 * Throws if there is no final manifest, or a page is held at another generation than it says. A
 * page file sealed at rest needs the migration's `key`.
 */
export async function memoryFromPageFile(store: PageStore, migrationId: string, key?: PageFileKey): Promise<Buffer> {
  const pageFile = await store.openPageFile(migrationId, key);
  try {
    const manifest = await pageFile.readFinalManifest();
    if (!manifest) throw new Error(`migration ${migrationId} has no final manifest in ${store.location}`);
    const { pageCount } = pageFile.header;
    const held = Buffer.alloc(pageCount * PAGE_SIZE_BYTES);
    const starts = Array.from({ length: Math.ceil(pageCount / READ_RUN_PAGES) }, (_, r) => r * READ_RUN_PAGES);
    for (let next = 0; next < starts.length; next += PARALLEL_READS) {
      await Promise.all(
        starts.slice(next, next + PARALLEL_READS).map((first) => {
          const count = Math.min(READ_RUN_PAGES, pageCount - first);
          return pageFile.readPages(
            first,
            count,
            held.subarray(first * PAGE_SIZE_BYTES, (first + count) * PAGE_SIZE_BYTES),
          );
        }),
      );
    }
    const memory = Buffer.alloc(held.length);
    manifest.indexes.forEach((index, k) => {
      const page = held.subarray(index * PAGE_SIZE_BYTES, (index + 1) * PAGE_SIZE_BYTES);
      const generation = page.readUInt32LE(4);
      if (generation !== manifest.versions[k])
        throw new Error(
          `page ${index} of migration ${migrationId} is at generation ${generation} in ${store.location}, ` +
            `the final manifest says ${manifest.versions[k]}`,
        );
      page.copy(memory, index * PAGE_SIZE_BYTES);
    });
    return memory;
  } finally {
    await pageFile.close();
  }
}

/**
 * Compares `vmId`'s memory on `hostId` (the destination, or a source kept stunned) with the source's
 * memory at stun as the page file records it.
 */
export async function compareWithPageFile(
  dumper: MemoryDumper,
  args: { vmId: string; hostId: string; store: PageStore; migrationId: string; dir: string },
): Promise<MemoryComparison> {
  await fs.mkdir(args.dir, { recursive: true });
  const dump = path.join(args.dir, `${args.vmId}-${args.hostId}.mem`);
  try {
    await dumper.dumpVmMemory(args.hostId, args.vmId, dump);
    const [atStun, destination] = await Promise.all([
      memoryFromPageFile(args.store, args.migrationId),
      fs.readFile(dump),
    ]);
    return compareMemory(atStun, destination);
  } finally {
    await fs.rm(dump, { force: true });
  }
}
