/**
 * The destination's last step before it may resume: guest memory is brought to the source's state
 * at stun from the page file, then checked against the source's whole-memory digest.
 *
 * The file is read only if memory differs from the digest or holds a torn page, and then only the
 * pages the final manifest names at a version memory lacks. The file may trail the stream: for a
 * page it does not hold at its final version yet, the fill waits (bounded) until the source marks
 * the file complete. Nothing may apply a page from the stream meanwhile.
 */
import { PAGE_SIZE_BYTES, type GuestMemory } from '../vmm/guest-memory';
import type { PageStore } from '../store/page-store';
import { VerificationError } from './errors';
import { prefetchPass } from './store-prefetch';

/** How long the fill waits for the source to complete the page file when it needs pages from it (ms). */
export const DEFAULT_STORE_COMPLETE_TIMEOUT_MS = 10_000;

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE_BYTES);

/** What the final fill works on. */
export interface FinalFillInput {
  store: PageStore;
  migrationId: string;
  memory: GuestMemory;
  /** Pages whose last received copy failed its self-check; a page read whole from the file leaves the set. */
  torn: Set<number>;
  /** The source's whole-memory digest at stun. */
  digest: string;
}

/** What the final fill did. */
export interface FinalFillResult {
  /** Digest of guest memory after the fill (equal to the source's). */
  digest: string;
  /** Pages read from the page file; 0 if memory needed none. */
  pagesFromStore: number;
  /** Pages that had arrived torn before the fill. */
  tornPagesRepaired: number;
}

/**
 * Fills guest memory from the page file where it lacks pages, then verifies it. Throws
 * VerificationError if the final manifest is missing, the file stays incomplete, the digest differs
 * from the source's or a page still fails its self-check; PageStoreError if a read fails.
 */
export async function fillAndVerify(input: FinalFillInput): Promise<FinalFillResult> {
  const { memory, torn } = input;
  const tornPagesRepaired = torn.size;
  let pagesFromStore = 0;
  let digest = memory.digest();
  if (digest !== input.digest || torn.size > 0) {
    pagesFromStore = await fillFromStore(input);
    digest = memory.digest();
  }
  if (digest !== input.digest)
    throw new VerificationError(input.migrationId, `digest ${digest} differs from the source's ${input.digest}`);
  if (torn.size > 0) throw new VerificationError(input.migrationId, `${torn.size} pages fail their self-check`);
  return { digest, pagesFromStore, tornPagesRepaired };
}

/** Reads from the page file every page memory lacks; returns how many it read. */
async function fillFromStore({ store, migrationId, memory, torn }: FinalFillInput): Promise<number> {
  const pageFile = await store.openPageFile(migrationId);
  try {
    const manifest = await pageFile.readFinalManifest();
    if (!manifest) throw new VerificationError(migrationId, 'the final manifest is not in the store');
    const meta = memory.meta;
    const inManifest = new Uint8Array(memory.pageCount);
    const page = Buffer.alloc(PAGE_SIZE_BYTES);
    const readAt = async (index: number, version: number): Promise<boolean> => {
      await pageFile.readPages(index, 1, page);
      const ok = memory.applyPage(index, page) && meta[index * 2] === version;
      if (ok) torn.delete(index);
      else torn.add(index);
      return ok;
    };
    // Runs of consecutive pages first, one read each; the loop below reads one page at a time only
    // what that did not bring to its final version (the file may trail, or hold a page torn).
    let read = (await prefetchPass(pageFile, manifest, memory, torn)).pagesRead;
    const notYetInFile: number[] = [];
    for (let k = 0; k < manifest.indexes.length; k += 1) {
      const index = manifest.indexes[k] as number;
      inManifest[index] = 1;
      if (meta[index * 2] === manifest.versions[k] && !torn.has(index)) continue;
      read += 1;
      if (!(await readAt(index, manifest.versions[k] as number))) notYetInFile.push(k);
    }
    // The file may trail the stream: a page it does not hold at its final version yet is read
    // again once the source has marked the file complete.
    if (notYetInFile.length > 0) {
      if (!(await pageFile.waitForComplete(DEFAULT_STORE_COMPLETE_TIMEOUT_MS))) {
        throw new VerificationError(
          migrationId,
          `${notYetInFile.length} pages are missing and the page file was not completed within ${DEFAULT_STORE_COMPLETE_TIMEOUT_MS} ms`,
        );
      }
      for (const k of notYetInFile) await readAt(manifest.indexes[k] as number, manifest.versions[k] as number);
    }
    // A page the source holds as zero but this side received earlier must be zero again.
    for (let index = 0; index < memory.pageCount; index += 1) {
      if (inManifest[index] === 0 && meta[index * 2] !== 0) {
        memory.applyPage(index, ZERO_PAGE);
        torn.delete(index);
      }
    }
    return read;
  } finally {
    await pageFile.close();
  }
}
