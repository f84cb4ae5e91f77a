/**
 * The page batch: ferry's framed binary unit on the page stream.
 *
 * Layout (little endian):
 *   magic "FRYB" u32 | format u16 | flags u16 (bit 0: final round, bit 1: last of its round) | round u32 | seq u32 |
 *   entryCount u32 | idLength u16 | reserved u16 | migration id (UTF-8, padded to 4 bytes) |
 *   entryCount × (index u32 with bit 31 = zero page, version u32) |
 *   one 4 KiB page per non-zero entry | crc32 of the header, id and entry table.
 * Page data is not summed again here: every guest page carries its own checksum, which the
 * receiver checks as it applies the page, so a damaged page is caught (and taken from the page
 * file) without paying for a second pass over every byte on both hosts.
 * Zero pages travel as entries without data. Sequence numbers start at 1 and grow by one per batch
 * across the whole migration, so a receiver notices a lost batch by the gap.
 */
import * as zlib from 'node:zlib';
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';

const MAGIC = 0x42595246; // "FRYB" read as little endian
const FORMAT = 1;
const ZERO_FLAG = 0x80000000;
const FIXED_BYTES = 24;
/** Where a guest page keeps its generation (see vmm/guest-memory). */
const PAGE_GENERATION_OFFSET = 4;

/** Batch flag: the batch belongs to the final (post-stun) round. */
export const BATCH_FLAG_FINAL = 1;
/** Batch flag: the last batch of a round; the receiver acknowledges it at once. */
export const BATCH_FLAG_ROUND_END = 2;

/** One page entry of a batch. */
export interface BatchEntry {
  index: number;
  version: number;
  /** True when the page is all zeros and carries no data. */
  zero: boolean;
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

/** Thrown when a received batch is malformed or its checksum does not match. */
export class BatchFormatError extends Error {
  override readonly name = 'BatchFormatError';
}

function paddedIdLength(idBytes: number): number {
  return (idBytes + 3) & ~3;
}

/** Bytes a batch takes for the given id, entry count and number of non-zero pages. */
export function batchSizeBytes(migrationId: string, entryCount: number, dataPages: number): number {
  return (
    FIXED_BYTES + paddedIdLength(Buffer.byteLength(migrationId)) + entryCount * 8 + dataPages * PAGE_SIZE_BYTES + 4
  );
}

/**
 * Builds batches into one reusable buffer: `begin`, then `addPage` for each page (copying it), then
 * `finish`, which seals the checksum and returns the batch.
 */
export class BatchBuilder {
  private buffer: Buffer;
  private readonly idBytes: Buffer;
  private readonly entriesOffset: number;
  private entryCount = 0;
  private dataPages = 0;

  constructor(
    readonly migrationId: string,
    readonly maxPages: number,
  ) {
    this.idBytes = Buffer.from(migrationId, 'utf8');
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
   * Adds a page, copying it, and returns its version: the generation in the header of the copy
   * (so the version always describes the bytes that travel). `page` is null for a zero page,
   * whose version is 0.
   */
  addPage(index: number, page: Buffer | null): number {
    if (this.entryCount >= this.maxPages) throw new RangeError('batch is full');
    const entry = this.entriesOffset + this.entryCount * 8;
    let version = 0;
    if (page === null) {
      this.buffer.writeUInt32LE((index | ZERO_FLAG) >>> 0, entry);
    } else {
      // Page data is laid out after the maximum entry table and compacted in `finish`.
      const offset = this.entriesOffset + this.maxPages * 8 + this.dataPages * PAGE_SIZE_BYTES;
      page.copy(this.buffer, offset, 0, PAGE_SIZE_BYTES);
      version = this.buffer.readUInt32LE(offset + PAGE_GENERATION_OFFSET);
      this.buffer.writeUInt32LE(index, entry);
      this.dataPages += 1;
    }
    this.buffer.writeUInt32LE(version, entry + 4);
    this.entryCount += 1;
    return version;
  }

  /**
   * Seals the batch with its header and checksum. Returns the frame and, inside it, the non-zero
   * pages contiguous in entry order (views of this batch's own buffer).
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
    const dataStart = this.entriesOffset + this.entryCount * 8;
    const reservedStart = this.entriesOffset + this.maxPages * 8;
    if (dataStart !== reservedStart && this.dataPages > 0) {
      b.copy(b, dataStart, reservedStart, reservedStart + this.dataPages * PAGE_SIZE_BYTES);
    }
    const end = dataStart + this.dataPages * PAGE_SIZE_BYTES;
    b.writeUInt32LE(zlib.crc32(b.subarray(0, dataStart)), end);
    return { frame: b.subarray(0, end + 4), pageData: b.subarray(dataStart, end) };
  }
}

/** Decodes and verifies a batch; throws BatchFormatError on any inconsistency. */
export function decodeBatch(msg: Uint8Array): DecodedBatch {
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  if (b.length < FIXED_BYTES + 4 || b.readUInt32LE(0) !== MAGIC) throw new BatchFormatError('not a ferry page batch');
  if (b.readUInt16LE(4) !== FORMAT) throw new BatchFormatError(`unsupported batch format ${b.readUInt16LE(4)}`);
  const crcAt = b.length - 4;
  const entryCount = b.readUInt32LE(16);
  const idLength = b.readUInt16LE(20);
  const entriesOffset = FIXED_BYTES + paddedIdLength(idLength);
  if (entriesOffset + entryCount * 8 > crcAt)
    throw new BatchFormatError(`batch of ${b.length} bytes cannot hold ${entryCount} entries`);
  const dataStart = entriesOffset + entryCount * 8;
  if (zlib.crc32(b.subarray(0, dataStart)) !== b.readUInt32LE(crcAt))
    throw new BatchFormatError('batch checksum mismatch');
  const entries: BatchEntry[] = [];
  let dataPages = 0;
  for (let i = 0; i < entryCount; i += 1) {
    const raw = b.readUInt32LE(entriesOffset + i * 8);
    const zero = (raw & ZERO_FLAG) !== 0;
    if (!zero) dataPages += 1;
    entries.push({ index: raw & ~ZERO_FLAG, version: b.readUInt32LE(entriesOffset + i * 8 + 4), zero });
  }
  if (dataStart + dataPages * PAGE_SIZE_BYTES !== crcAt)
    throw new BatchFormatError('batch length does not match its entries');
  return {
    migrationId: b.toString('utf8', FIXED_BYTES, FIXED_BYTES + idLength),
    flags: b.readUInt16LE(6),
    round: b.readUInt32LE(8),
    seq: b.readUInt32LE(12),
    entries,
    pageData: b.subarray(dataStart, crcAt),
  };
}
