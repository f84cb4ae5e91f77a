/**
 * Reading back what a migration left on a page store, for the S3 store's tests: the memory the
 * final manifest records, read a chunk at a time (a ranged GET per 256 pages rather than one per
 * page), and a VM's memory dumped by its host.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CHUNK_PAGES } from '../../../store/object-page-layout';
import type { PageStore } from '../../../store/page-store';
import type { MemoryDumper } from '../../../verification';
import { PAGE_SIZE_BYTES } from '../../../vmm/guest-memory';

/** Runs of CHUNK_PAGES read at once. */
const PARALLEL_READS = 4;

/**
 * The memory at stun as the store records it: the pages of the final manifest, zero elsewhere.
 * Throws if there is no final manifest, or a page is held at another generation than it says.
 */
export async function memoryInStore(store: PageStore, migrationId: string): Promise<Buffer> {
  const pageFile = await store.openPageFile(migrationId);
  try {
    const manifest = await pageFile.readFinalManifest();
    if (!manifest) throw new Error(`migration ${migrationId} has no final manifest in ${store.location}`);
    const { pageCount } = pageFile.header;
    const held = Buffer.alloc(pageCount * PAGE_SIZE_BYTES);
    const starts = Array.from({ length: Math.ceil(pageCount / CHUNK_PAGES) }, (_, c) => c * CHUNK_PAGES);
    for (let next = 0; next < starts.length; next += PARALLEL_READS) {
      await Promise.all(
        starts.slice(next, next + PARALLEL_READS).map((first) => {
          const count = Math.min(CHUNK_PAGES, pageCount - first);
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

/** The memory of `vmId` on `hostId`, dumped into `dir` and read back (the dump is removed). */
export async function dumpMemory(dumper: MemoryDumper, hostId: string, vmId: string, dir: string): Promise<Buffer> {
  const file = path.join(dir, `${vmId}-${hostId}-probe.mem`);
  try {
    await dumper.dumpVmMemory(hostId, vmId, file);
    return await fs.readFile(file);
  } finally {
    await fs.rm(file, { force: true });
  }
}
