/**
 * The page batch: ferry's framed binary unit on the page stream.
 *
 * Layout (little endian):
 *   magic "FRYB" u32 | format u16 | flags u16 (bit 0: final round, bit 1: last of its round) | round u32 | seq u32 |
 *   entryCount u32 | idLength u16 | reserved u16 | migration id (UTF-8, padded to 4 bytes) |
 *   entryCount × (index u32 with bit 31 = zero page, version u32, content hash 16 bytes) |
 *   one 4 KiB page per non-zero entry | MAC (16 bytes) of the header, id and entry table.
 * The MAC (message-auth.ts, under the migration's key) authenticates the header and the entry
 * table; each page's content hash (page-hashes.ts) in the table binds its data, so a batch whose
 * pages were changed on the way fails as surely as one with a changed header. The hashes are the
 * one pass over the page data on each host: the source records them as the content it sent, the
 * destination checks them here and records them as the content it holds, for the switchover's
 * content digest.
 * Zero pages travel as entries without data. Sequence numbers start at 1 and grow by one per batch
 * across the whole migration, so a receiver notices a lost batch by the gap.
 *
 * An encrypted batch (flag bit 2, `policy.encrypt`; page-cipher.ts) carries its key's salt and its
 * GCM tag (PAGE_CIPHER_SALT_BYTES + PAGE_TAG_BYTES) between the id and the entry table, its pages as
 * AES-256-GCM ciphertext, and zeros where a clear batch has each non-zero page's content hash. The
 * MAC covers the salt and the tag, the tag the ciphertext and the entry table. The buffer handed
 * to the page file (`pageData` of `finish`) still holds the pages in clear: only the stream is
 * encrypted.
 */
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import { MAC_BYTES, type MessageAuth } from './message-auth';
import { PAGE_HASH_BYTES, ZERO_PAGE_HASH, pageHash, type PageHashes } from './page-hashes';
import { PAGE_CIPHER_SALT_BYTES, PAGE_TAG_BYTES, type PageCipher } from './page-cipher';

const MAGIC = 0x42595246; // "FRYB" read as little endian
const FORMAT = 2;
const ENTRY_BYTES = 8 + PAGE_HASH_BYTES;
const ZERO_FLAG = 0x80000000;
const FIXED_BYTES = 24;
/** Where a guest page keeps its generation (see vmm/guest-memory). */
const PAGE_GENERATION_OFFSET = 4;
/** What an encrypted batch adds after the id: its key's salt and its GCM tag. */
const ENCRYPTION_BYTES = PAGE_CIPHER_SALT_BYTES + PAGE_TAG_BYTES;

/** Batch flag: the batch belongs to the final (post-stun) round. */
export const BATCH_FLAG_FINAL = 1;
/** Batch flag: the last batch of a round; the receiver acknowledges it at once. */
export const BATCH_FLAG_ROUND_END = 2;
/** Batch flag: the pages are encrypted (page-cipher.ts); set by a builder given a cipher. */
export const BATCH_FLAG_ENCRYPTED = 4;

/** One page entry of a batch. */
export interface BatchEntry {
  index: number;
  version: number;
  /** True when the page is all zeros and carries no data. */
  zero: boolean;
  /**
   * Content hash of the page (PAGE_HASH_BYTES, a view of the message; checked against the data). In
   * a decoded encrypted batch, computed from the decrypted page.
   */
  hash: Buffer;
}

/** A decoded batch; `pageData` holds the non-zero pages in entry order (a view of the message). */
export interface DecodedBatch {
  migrationId: string;
  round: number;
  seq: number;
  flags: number;
  entries: BatchEntry[];
  pageData: Buffer;
}

/** Thrown when a received batch is malformed, fails its MAC, or a page does not match its hash. */
export class BatchFormatError extends Error {
  override readonly name = 'BatchFormatError';
}

function paddedIdLength(idBytes: number): number {
  return (idBytes + 3) & ~3;
}

/** Bytes a batch takes for the given id, entry count and number of non-zero pages (encrypted or not). */
export function batchSizeBytes(migrationId: string, entryCount: number, dataPages: number, encrypted = false): number {
  return (
    FIXED_BYTES +
    paddedIdLength(Buffer.byteLength(migrationId)) +
    (encrypted ? ENCRYPTION_BYTES : 0) +
    entryCount * ENTRY_BYTES +
    dataPages * PAGE_SIZE_BYTES +
    MAC_BYTES
  );
}

/**
 * Builds batches into one reusable buffer: `begin`, then `addPage` for each page (copying it and
 * hashing the copy), then `finish`, which seals the MAC and returns the batch. With `hashes`, each
 * page's hash is also recorded there as the content sent for it. With `cipher`, every batch is
 * encrypted (see the header).
 */
export class BatchBuilder {
  private buffer: Buffer;
  private readonly idBytes: Buffer;
  /** The migration the batches belong to (the key's). */
  readonly migrationId: string;
  private readonly entriesOffset: number;
  private entryCount = 0;
  private dataPages = 0;

  constructor(
    private readonly auth: MessageAuth,
    readonly maxPages: number,
    private readonly hashes?: PageHashes,
    private readonly cipher?: PageCipher,
  ) {
    this.migrationId = auth.migrationId;
    this.idBytes = Buffer.from(this.migrationId, 'utf8');
    this.entriesOffset = FIXED_BYTES + paddedIdLength(this.idBytes.length);
    this.buffer = Buffer.alloc(0);
  }

  /**
   * Starts a new batch in a fresh buffer, so the previous batch stays valid for whoever still
   * holds it (the page file writes batches straight from these buffers).
   */
  begin(): void {
    this.buffer = Buffer.allocUnsafeSlow(batchSizeBytes(this.migrationId, this.maxPages, this.maxPages));
    this.entryCount = 0;
    this.dataPages = 0;
  }

  /** Number of entries added since `begin`. */
  get size(): number {
    return this.entryCount;
  }

  /**
   * Adds a page, copying it, and returns its version: `version` when given (a guest port that keeps
   * versions itself), else the generation in the header of the copy (so the version always
   * describes the bytes that travel). `page` is null for a zero page, whose version is 0.
   */
  addPage(index: number, page: Buffer | null, version?: number): number {
    if (this.entryCount >= this.maxPages) throw new RangeError('batch is full');
    const entry = this.entriesOffset + this.entryCount * ENTRY_BYTES;
    let pageVersion = 0;
    if (page === null) {
      this.buffer.writeUInt32LE((index | ZERO_FLAG) >>> 0, entry);
      ZERO_PAGE_HASH.copy(this.buffer, entry + 8);
      this.hashes?.set(index, ZERO_PAGE_HASH);
    } else {
      // Page data is laid out after the maximum entry table and compacted in `finish`.
      const offset = this.entriesOffset + this.maxPages * ENTRY_BYTES + this.dataPages * PAGE_SIZE_BYTES;
      page.copy(this.buffer, offset, 0, PAGE_SIZE_BYTES);
      pageVersion = version ?? this.buffer.readUInt32LE(offset + PAGE_GENERATION_OFFSET);
      // The hash of the copy, not of the guest's page: it describes the bytes that travel.
      const digest = pageHash(this.buffer.subarray(offset, offset + PAGE_SIZE_BYTES));
      digest.copy(this.buffer, entry + 8);
      this.hashes?.set(index, digest);
      this.buffer.writeUInt32LE(index, entry);
      this.dataPages += 1;
    }
    this.buffer.writeUInt32LE(pageVersion, entry + 4);
    this.entryCount += 1;
    return pageVersion;
  }

  /**
   * Seals the batch with its header and MAC. Returns the frame and the non-zero pages in clear,
   * contiguous in entry order (views of this batch's own buffer; for an encrypted batch the frame
   * is a buffer of its own).
   */
  finish(round: number, seq: number, flags: number): { frame: Buffer; pageData: Buffer } {
    const b = this.buffer;
    b.writeUInt32LE(MAGIC, 0);
    b.writeUInt16LE(FORMAT, 4);
    b.writeUInt16LE(flags, 6);
    b.writeUInt32LE(round, 8);
    b.writeUInt32LE(seq, 12);
    b.writeUInt32LE(this.entryCount, 16);
    b.writeUInt16LE(this.idBytes.length, 20);
    b.writeUInt16LE(0, 22);
    this.idBytes.copy(b, FIXED_BYTES);
    b.fill(0, FIXED_BYTES + this.idBytes.length, this.entriesOffset);
    const dataStart = this.entriesOffset + this.entryCount * ENTRY_BYTES;
    const reservedStart = this.entriesOffset + this.maxPages * ENTRY_BYTES;
    if (dataStart !== reservedStart && this.dataPages > 0) {
      b.copy(b, dataStart, reservedStart, reservedStart + this.dataPages * PAGE_SIZE_BYTES);
    }
    const end = dataStart + this.dataPages * PAGE_SIZE_BYTES;
    const pageData = b.subarray(dataStart, end);
    if (this.cipher) return { frame: this.encryptedFrame(b, flags, pageData), pageData };
    this.auth.mac('batch', b.subarray(0, dataStart)).copy(b, end);
    return { frame: b.subarray(0, end + MAC_BYTES), pageData };
  }

  /** The encrypted frame of the batch whose clear header and entries are in `b` (see the header). */
  private encryptedFrame(b: Buffer, flags: number, pageData: Buffer): Buffer {
    const cipher = this.cipher as PageCipher;
    const key = cipher.newBatchKey();
    const entriesOffset = this.entriesOffset + ENCRYPTION_BYTES;
    const dataStart = entriesOffset + this.entryCount * ENTRY_BYTES;
    const frame = Buffer.allocUnsafeSlow(dataStart + pageData.length + MAC_BYTES);
    b.copy(frame, 0, 0, this.entriesOffset);
    frame.writeUInt16LE(flags | BATCH_FLAG_ENCRYPTED, 6);
    key.salt.copy(frame, this.entriesOffset);
    b.copy(frame, entriesOffset, this.entriesOffset, this.entriesOffset + this.entryCount * ENTRY_BYTES);
    for (let i = 0; i < this.entryCount; i += 1) {
      const entry = entriesOffset + i * ENTRY_BYTES;
      if ((frame.readUInt32LE(entry) & ZERO_FLAG) === 0) frame.fill(0, entry + 8, entry + ENTRY_BYTES);
    }
    cipher
      .seal(key, frame.subarray(entriesOffset, dataStart), pageData, frame, dataStart)
      .copy(frame, this.entriesOffset + PAGE_CIPHER_SALT_BYTES);
    this.auth.mac('batch', frame.subarray(0, dataStart)).copy(frame, dataStart + pageData.length);
    return frame;
  }
}

/**
 * Decodes and verifies a batch of the migration `auth` is for: its MAC under the migration's key,
 * its framing, and each page against its content hash, or for an encrypted batch its GCM tag under
 * `cipher` (then `pageData` is the decrypted pages, in a buffer of its own, and each entry's `hash`
 * the content hash of its page in clear). Throws BatchFormatError on any inconsistency (an
 * encrypted batch without `cipher` among them), and nothing else whatever `msg` holds.
 */
export function decodeBatch(msg: Uint8Array, auth: MessageAuth, cipher?: PageCipher): DecodedBatch {
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  if (b.length < FIXED_BYTES + MAC_BYTES || b.readUInt32LE(0) !== MAGIC)
    throw new BatchFormatError('not a ferry page batch');
  if (b.readUInt16LE(4) !== FORMAT) throw new BatchFormatError(`unsupported batch format ${b.readUInt16LE(4)}`);
  const macAt = b.length - MAC_BYTES;
  const entryCount = b.readUInt32LE(16);
  const idLength = b.readUInt16LE(20);
  const encrypted = (b.readUInt16LE(6) & BATCH_FLAG_ENCRYPTED) !== 0;
  const saltAt = FIXED_BYTES + paddedIdLength(idLength);
  const entriesOffset = saltAt + (encrypted ? ENCRYPTION_BYTES : 0);
  if (entriesOffset + entryCount * ENTRY_BYTES > macAt)
    throw new BatchFormatError(`batch of ${b.length} bytes cannot hold ${entryCount} entries`);
  const dataStart = entriesOffset + entryCount * ENTRY_BYTES;
  // A batch of another migration (a replay) fails here too: its MAC is under another key.
  if (!auth.verify('batch', b.subarray(macAt), b.subarray(0, dataStart)))
    throw new BatchFormatError("batch MAC mismatch: not sent by this migration's source, or altered");
  const migrationId = b.toString('utf8', FIXED_BYTES, FIXED_BYTES + idLength);
  if (migrationId !== auth.migrationId)
    throw new BatchFormatError(`batch of migration ${migrationId}, not ${auth.migrationId}`);
  const entries: BatchEntry[] = [];
  let dataPages = 0;
  for (let i = 0; i < entryCount; i += 1) {
    const at = entriesOffset + i * ENTRY_BYTES;
    const raw = b.readUInt32LE(at);
    const zero = (raw & ZERO_FLAG) !== 0;
    if (!zero) dataPages += 1;
    entries.push({
      index: raw & ~ZERO_FLAG,
      version: b.readUInt32LE(at + 4),
      zero,
      hash: b.subarray(at + 8, at + ENTRY_BYTES),
    });
  }
  if (dataStart + dataPages * PAGE_SIZE_BYTES !== macAt)
    throw new BatchFormatError('batch length does not match its entries');
  if (encrypted) {
    if (!cipher) throw new BatchFormatError('encrypted batch, but this receiver has no page cipher');
    return decryptedBatch(b, entries, cipher, saltAt, entriesOffset, dataStart, macAt, migrationId);
  }
  const pageData = b.subarray(dataStart, macAt);
  let k = 0;
  for (const entry of entries) {
    if (entry.zero) continue;
    const page = pageData.subarray(k * PAGE_SIZE_BYTES, (k + 1) * PAGE_SIZE_BYTES);
    if (!pageHash(page).equals(entry.hash))
      throw new BatchFormatError(`page ${entry.index} of batch ${b.readUInt32LE(12)} does not match its content hash`);
    k += 1;
  }
  return {
    migrationId,
    flags: b.readUInt16LE(6),
    round: b.readUInt32LE(8),
    seq: b.readUInt32LE(12),
    entries,
    pageData,
  };
}

/** The decoded batch of encrypted batch `b`, whose MAC and framing were checked; see decodeBatch. */
function decryptedBatch(
  b: Buffer,
  entries: BatchEntry[],
  cipher: PageCipher,
  saltAt: number,
  entriesOffset: number,
  dataStart: number,
  macAt: number,
  migrationId: string,
): DecodedBatch {
  const key = cipher.batchKey(b.subarray(saltAt, saltAt + PAGE_CIPHER_SALT_BYTES));
  const tag = b.subarray(saltAt + PAGE_CIPHER_SALT_BYTES, entriesOffset);
  const pageData = Buffer.allocUnsafe(macAt - dataStart);
  if (!cipher.open(key, b.subarray(entriesOffset, dataStart), b.subarray(dataStart, macAt), tag, pageData, 0))
    throw new BatchFormatError(`batch ${b.readUInt32LE(12)} fails its encryption tag`);
  let k = 0;
  for (const entry of entries) {
    if (entry.zero) continue;
    entry.hash = pageHash(pageData.subarray(k * PAGE_SIZE_BYTES, (k + 1) * PAGE_SIZE_BYTES));
    k += 1;
  }
  return {
    migrationId,
    flags: b.readUInt16LE(6),
    round: b.readUInt32LE(8),
    seq: b.readUInt32LE(12),
    entries,
    pageData,
  };
}
