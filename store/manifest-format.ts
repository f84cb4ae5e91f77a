/**
 * Binary manifest: which pages, at which version, the page file durably holds. A round manifest
 * lists the pages synced in that round; the final manifest lists every non-zero page of the guest
 * at stun, with the source's memory digest and the last batch sequence number sent.
 *
 * Layout (little endian): magic "FRYM" | format u32 | round u32 | flags u32 (bit 0: final) |
 * count u32 | finalSeq u32 | digest (64 ASCII hex bytes, zeros unless final) | count × index u32 |
 * count × version u32 | crc32 of everything before. Indexes ascend strictly (readers take runs of
 * consecutive pages), and a reader refuses a manifest where they do not.
 */
import * as zlib from 'node:zlib';
import { ManifestFormatError } from './errors';

const MAGIC = 0x4d595246; // "FRYM" read as little endian
const FORMAT = 1;
const FIXED_BYTES = 24 + 64;

/** A decoded manifest. */
export interface Manifest {
  round: number;
  final: boolean;
  indexes: Uint32Array;
  versions: Uint32Array;
  /** Sequence number of the last page batch sent (final manifest only, else 0). */
  finalSeq: number;
  /** sha256 hex of the source memory's page table at stun (final manifest only, else ''). */
  digest: string;
}

/** Encodes a manifest; `indexes` and `versions` must have the same length. */
export function encodeManifest(m: Manifest): Buffer {
  if (m.indexes.length !== m.versions.length) throw new Error('manifest indexes and versions differ in length');
  const count = m.indexes.length;
  const buf = Buffer.alloc(FIXED_BYTES + count * 8 + 4);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(FORMAT, 4);
  buf.writeUInt32LE(m.round, 8);
  buf.writeUInt32LE(m.final ? 1 : 0, 12);
  buf.writeUInt32LE(count, 16);
  buf.writeUInt32LE(m.finalSeq, 20);
  buf.write(m.digest.padEnd(64, '\0').slice(0, 64), 24, 'ascii');
  Buffer.from(m.indexes.buffer, m.indexes.byteOffset, count * 4).copy(buf, FIXED_BYTES);
  Buffer.from(m.versions.buffer, m.versions.byteOffset, count * 4).copy(buf, FIXED_BYTES + count * 4);
  buf.writeUInt32LE(zlib.crc32(buf.subarray(0, buf.length - 4)), buf.length - 4);
  return buf;
}

/**
 * Decodes and checks a manifest. Throws ManifestFormatError, and nothing else whatever `buf` holds,
 * on a bad magic, format, length or checksum, or indexes that do not ascend strictly.
 */
export function decodeManifest(buf: Buffer): Manifest {
  if (buf.length < FIXED_BYTES + 4 || buf.readUInt32LE(0) !== MAGIC)
    throw new ManifestFormatError('not a ferry manifest');
  if (buf.readUInt32LE(4) !== FORMAT)
    throw new ManifestFormatError(`unsupported manifest format ${buf.readUInt32LE(4)}`);
  const count = buf.readUInt32LE(16);
  if (buf.length !== FIXED_BYTES + count * 8 + 4)
    throw new ManifestFormatError('manifest length does not match its page count');
  if (zlib.crc32(buf.subarray(0, buf.length - 4)) !== buf.readUInt32LE(buf.length - 4)) {
    throw new ManifestFormatError('manifest checksum mismatch');
  }
  const indexes = new Uint32Array(count);
  const versions = new Uint32Array(count);
  Buffer.from(indexes.buffer).set(buf.subarray(FIXED_BYTES, FIXED_BYTES + count * 4));
  Buffer.from(versions.buffer).set(buf.subarray(FIXED_BYTES + count * 4, FIXED_BYTES + count * 8));
  for (let k = 1; k < count; k += 1)
    if ((indexes[k] as number) <= (indexes[k - 1] as number))
      throw new ManifestFormatError(`manifest indexes do not ascend at entry ${k}`);
  return {
    round: buf.readUInt32LE(8),
    final: (buf.readUInt32LE(12) & 1) === 1,
    indexes,
    versions,
    finalSeq: buf.readUInt32LE(20),
    digest: buf.toString('ascii', 24, 88).replace(/\0+$/, ''),
  };
}
