/**
 * The content hash of every guest page, kept as pages travel, so that the switchover can compare
 * the whole memory's content without reading it (no full-memory scan between stun and resume).
 *
 * A page's hash is SHA-256 of its 4096 bytes, truncated to PAGE_HASH_BYTES. The source records the
 * hash of each copy it puts into a batch (batch-format.ts), the destination the hash of each page
 * it applies, from the stream or from the page file. At stun both take the keyed digest of their
 * table (message-auth.ts): equal digests mean equal content, where the crc32 in each page's header
 * only catches accidents (a forger can give any content the crc32 it wants).
 */
import { hash } from 'node:crypto';
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import type { GuestPages } from '../vmm/guest-port';
import type { MessageAuth } from './message-auth';

/** Length of a page's content hash (bytes). */
export const PAGE_HASH_BYTES = 16;

/** The content hash of one 4096-byte page (SHA-256, truncated to PAGE_HASH_BYTES). */
export function pageHash(page: Uint8Array): Buffer {
  return hash('sha256', page, 'buffer').subarray(0, PAGE_HASH_BYTES);
}

/** Hash of the zero page: what every entry of a fresh table holds. */
export const ZERO_PAGE_HASH: Buffer = pageHash(Buffer.alloc(PAGE_SIZE_BYTES));

/** The content hashes of one guest's pages. */
export class PageHashes {
  /** PAGE_HASH_BYTES per page, in page order. */
  readonly table: Buffer;

  /** A table of `pageCount` zero pages. */
  constructor(readonly pageCount: number) {
    this.table = Buffer.alloc(pageCount * PAGE_HASH_BYTES);
    for (let i = 0; i < pageCount; i += 1) ZERO_PAGE_HASH.copy(this.table, i * PAGE_HASH_BYTES);
  }

  /** Records `pageHashBytes` (PAGE_HASH_BYTES) as the hash of page `index`. */
  set(index: number, pageHashBytes: Uint8Array): void {
    this.table.set(pageHashBytes.subarray(0, PAGE_HASH_BYTES), index * PAGE_HASH_BYTES);
  }

  /** Records the hash of `page` (4096 bytes) as page `index`'s. */
  record(index: number, page: Uint8Array): void {
    this.set(index, pageHash(page));
  }

  /** The keyed digest of the whole table: the content digest of the memory the table describes. */
  digest(auth: MessageAuth): string {
    return auth.keyedDigest(this.table);
  }
}

/**
 * Destination side: applies `page` to guest memory as page `index`, version `version`
 * (GuestPages.applyPage) and records its hash. Returns the page's self-check.
 */
export function applyHashedPage(
  memory: GuestPages,
  hashes: PageHashes | undefined,
  index: number,
  page: Buffer,
  version: number,
): boolean {
  const ok = memory.applyPage(index, page, version);
  hashes?.record(index, page);
  return ok;
}
