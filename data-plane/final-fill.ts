/**
 * The destination's last step before it may resume: guest memory is brought to the source's state
 * at stun from the page file, then checked against the source's whole-memory digest.
 *
 * Two digests are compared: the crc32-based `GuestMemory.digest` (generation and crc of every
 * page, catching pages missed or torn) and the keyed content digest of every page's SHA-256
 * (page-hashes.ts), which a forged page cannot match even with the right crc32. Both are kept
 * incrementally as pages arrive, so neither reads guest memory at the switchover.
 *
 * The file is read only if memory differs from a digest or holds a torn page, and then only the
 * pages the final manifest names at a version memory lacks. The store may trail the stream: a page
 * it does not hold at its final version yet is read again until it is there, as long as pages keep
 * arriving (bounded in all), unless the source marked the store complete without it. Nothing may
 * apply a page from the stream meanwhile.
 */
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import type { GuestPages } from '../vmm/guest-port';
import type { PageFileKey, PageStore } from '../store/page-store';
import { untilAnswered, type AnswerOptions } from '../store/store-answer';
import { VerificationError } from './errors';
import { prefetchPass } from './store-prefetch';
import { applyHashedPage, type PageHashes } from './page-hashes';
import type { MessageAuth } from './message-auth';

/**
 * How long the fill waits for pages the store does not hold at their final version yet without
 * any of them arriving (ms); each one that arrives starts the wait again.
 */
export const DEFAULT_STORE_COMPLETE_TIMEOUT_MS = 10_000;
/** Longest the fill waits for the store in all, however steadily pages arrive (ms). */
export const MAX_STORE_CATCH_UP_MS = 60_000;
/** How often the fill reads again the pages it still waits for (ms). */
const CATCH_UP_POLL_MS = 50;
/** Most pages read in one go (1 MiB): a longer run is read in pieces, so the buffer stays this size. */
export const MAX_FILL_RUN_PAGES = 256;

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE_BYTES);

/** What the final fill works on. */
export interface FinalFillInput {
  store: PageStore;
  migrationId: string;
  memory: GuestPages;
  /** Pages whose last received copy failed its self-check; a page read whole from the file leaves the set. */
  torn: Set<number>;
  /** The source's whole-memory digest at stun. */
  digest: string;
  /** The destination's page content hashes, the migration's key, and the source's content digest. */
  content: { hashes: PageHashes; auth: MessageAuth; digest: string };
  /** The migration key, to open a page file sealed at rest. */
  pageFileKey?: PageFileKey;
}

/** What the final fill did. */
export interface FinalFillResult {
  /** Digest of guest memory after the fill (equal to the source's). */
  digest: string;
  /** Content digest after the fill (equal to the source's). */
  contentDigest: string;
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
  const { content } = input;
  let digest = memory.digest();
  let contentDigest = content.hashes.digest(content.auth);
  if (digest !== input.digest || contentDigest !== content.digest || torn.size > 0) {
    pagesFromStore = await fillFromStore(input);
    digest = memory.digest();
    contentDigest = content.hashes.digest(content.auth);
  }
  if (digest !== input.digest)
    throw new VerificationError(input.migrationId, `digest ${digest} differs from the source's ${input.digest}`);
  if (contentDigest !== content.digest)
    throw new VerificationError(
      input.migrationId,
      `the content of memory differs from the source's (content digest ${contentDigest}, the source's ${content.digest})`,
    );
  if (torn.size > 0) throw new VerificationError(input.migrationId, `${torn.size} pages fail their self-check`);
  return { digest, contentDigest, pagesFromStore, tornPagesRepaired };
}

/**
 * fillAndVerify, run again while the store fails to answer (store/store-answer.ts): a read error
 * is not a verdict on the copy, which may be the VM's only one. A VerificationError (the store
 * answered, and memory does not match) is thrown at once; StoreUndecidedError once the store has
 * not answered within the limit.
 */
export function fillAndVerifyUntilAnswered(
  input: FinalFillInput,
  options: AnswerOptions = {},
): Promise<FinalFillResult> {
  return untilAnswered(`the final pages of migration ${input.migrationId}`, () => fillAndVerify(input), {
    retryIf: (err) => (err as Error | null)?.name !== 'VerificationError',
    ...options,
  });
}

/** Pages `pending` (positions in `manifest`) read again and again until memory holds each at its final version. */
async function catchUp(
  pending: number[],
  manifest: { indexes: Uint32Array; versions: Uint32Array },
  readRun: (first: number, count: number, target: Buffer) => Promise<void>,
  memory: GuestPages,
  torn: Set<number>,
  complete: () => Promise<boolean>,
  migrationId: string,
  hashes: PageHashes,
): Promise<void> {
  const startedAt = Date.now();
  let progressAt = startedAt;
  let buffer = Buffer.alloc(0);
  while (pending.length > 0) {
    // The pass over the final manifest has just read every pending page: look again a little later.
    await new Promise((r) => setTimeout(r, CATCH_UP_POLL_MS));
    const wasComplete = await complete();
    const still: number[] = [];
    for (let i = 0; i < pending.length;) {
      // A run: consecutive pages, read at once, at most MAX_FILL_RUN_PAGES.
      let count = 1;
      const first = manifest.indexes[pending[i] as number] as number;
      while (
        count < MAX_FILL_RUN_PAGES &&
        i + count < pending.length &&
        manifest.indexes[pending[i + count] as number] === first + count
      )
        count += 1;
      if (buffer.length < count * PAGE_SIZE_BYTES) buffer = Buffer.alloc(count * PAGE_SIZE_BYTES);
      await readRun(first, count, buffer);
      for (let j = 0; j < count; j += 1) {
        const k = pending[i + j] as number;
        const index = first + j;
        const ok =
          applyHashedPage(
            memory,
            hashes,
            index,
            buffer.subarray(j * PAGE_SIZE_BYTES, (j + 1) * PAGE_SIZE_BYTES),
            manifest.versions[k] as number,
          ) && memory.meta[index * 2] === manifest.versions[k];
        if (ok) torn.delete(index);
        else {
          torn.add(index);
          still.push(k);
        }
      }
      i += count;
    }
    if (still.length < pending.length) progressAt = Date.now();
    pending = still;
    if (pending.length === 0) return;
    const now = Date.now();
    const why = wasComplete
      ? 'the source marked the store complete without them'
      : now - progressAt >= DEFAULT_STORE_COMPLETE_TIMEOUT_MS
        ? `none arrived for ${DEFAULT_STORE_COMPLETE_TIMEOUT_MS} ms`
        : now - startedAt >= MAX_STORE_CATCH_UP_MS
          ? `the store did not catch up within ${MAX_STORE_CATCH_UP_MS} ms`
          : undefined;
    if (why !== undefined)
      throw new VerificationError(
        migrationId,
        `${pending.length} pages are missing from the store at their final version: ${why}`,
      );
  }
}

/** Reads from the page file every page memory lacks; returns how many it read. */
async function fillFromStore(input: FinalFillInput): Promise<number> {
  const { store, migrationId, memory, torn, content } = input;
  const { hashes } = content;
  const pageFile = await store.openPageFile(migrationId, input.pageFileKey);
  try {
    if (pageFile.header.pageCount !== memory.pageCount)
      throw new VerificationError(
        migrationId,
        `the page file holds ${pageFile.header.pageCount} pages, this guest has ${memory.pageCount}`,
      );
    const manifest = await pageFile.readFinalManifest();
    if (!manifest) throw new VerificationError(migrationId, 'the final manifest is not in the store');
    const beyond = manifest.indexes.find((index) => index >= memory.pageCount);
    if (beyond !== undefined)
      throw new VerificationError(
        migrationId,
        `the final manifest names page ${beyond} of a ${memory.pageCount}-page guest`,
      );
    // A page without a self-check cannot show that its slot holds the version the manifest names
    // yet: such a guest is filled only from a file the source has marked complete.
    if (!memory.selfChecking && !(await pageFile.waitForComplete(MAX_STORE_CATCH_UP_MS)))
      throw new VerificationError(
        migrationId,
        `the source did not mark the page file complete within ${MAX_STORE_CATCH_UP_MS} ms`,
      );
    const meta = memory.meta;
    const inManifest = new Uint8Array(memory.pageCount);
    // Runs of consecutive pages first, one read each; what that did not bring to its final version
    // (the store may trail, or hold a page torn) is read again below.
    let read = (await prefetchPass(pageFile, manifest, memory, torn, { hashes })).pagesRead;
    const notYetInFile: number[] = [];
    for (let k = 0; k < manifest.indexes.length; k += 1) {
      const index = manifest.indexes[k] as number;
      inManifest[index] = 1;
      if (meta[index * 2] !== manifest.versions[k] || torn.has(index)) notYetInFile.push(k);
    }
    // The store may trail the stream: a page it does not hold at its final version yet is read
    // again, in runs, until it is there (the source uploads the oldest first) or the source has
    // marked the store complete without it.
    await catchUp(
      notYetInFile,
      manifest,
      async (first, count, target) => {
        await pageFile.readPages(first, count, target);
        read += count;
      },
      memory,
      torn,
      () => pageFile.waitForComplete(0),
      migrationId,
      hashes,
    );
    // A page the source holds as zero but this side received earlier must be zero again.
    for (let index = 0; index < memory.pageCount; index += 1) {
      if (inManifest[index] === 0 && meta[index * 2] !== 0) {
        applyHashedPage(memory, hashes, index, ZERO_PAGE, 0);
        torn.delete(index);
      }
    }
    return read;
  } finally {
    await pageFile.close();
  }
}
