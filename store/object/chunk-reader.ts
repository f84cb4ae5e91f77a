/**
 * Reading pages out of chunk objects with ranged GETs: a run of consecutive pages is cut at chunk
 * boundaries and each piece is one GET of just its bytes, the pieces in parallel. S3 does not check
 * a ranged GET against the object's checksum, so nothing is checked here: every page checks itself
 * (its header names its index and holds the crc32 of its content), and the data plane applies
 * only pages that pass. A chunk never uploaded, or shorter than the piece, reads as zeros, which the
 * data plane takes as "not held". A sealed file's slots (page-seal.ts) are read the same way, a
 * piece's slots in one GET, and opened into the target: a slot that fails its tag reads as zeros.
 */
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { PageStoreError } from '../errors';
import { CHUNK_PAGES, chunkKey } from './object-page-layout';
import { slotBytesOf, type PageSealer } from '../page-seal';
import type { ObjectStore } from './object-store';

/** Most ranged GETs of one read in flight at once. */
export const MAX_PARALLEL_READS = 8;

interface Piece {
  chunk: number;
  /** First page of the piece, relative to the read's first page. */
  at: number;
  /** Byte offset of the piece in its chunk object. */
  offset: number;
  pages: number;
}

/** Splits pages [firstIndex, firstIndex + count) at chunk boundaries; slots of `slotBytes`. */
function piecesOf(firstIndex: number, count: number, slotBytes: number): Piece[] {
  const pieces: Piece[] = [];
  for (let index = firstIndex; index < firstIndex + count;) {
    const chunk = Math.floor(index / CHUNK_PAGES);
    const pages = Math.min(firstIndex + count, (chunk + 1) * CHUNK_PAGES) - index;
    pieces.push({ chunk, at: index - firstIndex, offset: (index - chunk * CHUNK_PAGES) * slotBytes, pages });
    index += pages;
  }
  return pieces;
}

/**
 * Reads `count` pages from page `firstIndex` of the migration's chunks into `target`, as the store
 * holds them now (opened by `sealer` if the file is sealed). Throws RangeError for a run outside
 * [0, pageCount) or a target too small, and PageStoreError naming the chunk's key if a GET fails.
 */
export async function readChunkPages(
  objects: ObjectStore,
  migrationId: string,
  pageCount: number,
  run: { firstIndex: number; count: number; target: Buffer },
  sealer?: PageSealer,
): Promise<void> {
  const { firstIndex, count, target } = run;
  if (!Number.isInteger(firstIndex) || !Number.isInteger(count) || firstIndex < 0 || firstIndex + count > pageCount)
    throw new RangeError(`pages ${firstIndex}..${firstIndex + count - 1} are outside [0, ${pageCount})`);
  if (target.length < count * PAGE_SIZE_BYTES)
    throw new RangeError(`target of ${target.length} bytes cannot hold ${count} pages`);
  const slotBytes = slotBytesOf(sealer);
  const pieces = piecesOf(firstIndex, count, slotBytes);
  const readPiece = async (piece: Piece): Promise<void> => {
    const key = chunkKey(migrationId, piece.chunk);
    const start = piece.at * PAGE_SIZE_BYTES;
    const length = piece.pages * slotBytes;
    try {
      const stored = await objects.get(key, { range: { offset: piece.offset, length } });
      const body = stored?.body ?? Buffer.alloc(0);
      if (sealer) {
        const slots = Buffer.alloc(length);
        body.copy(slots, 0, 0, Math.min(body.length, length));
        const pages = target.subarray(start, start + piece.pages * PAGE_SIZE_BYTES);
        sealer.openAll(firstIndex + piece.at, piece.pages, slots, pages);
        return;
      }
      body.copy(target, start, 0, Math.min(body.length, length));
      target.fill(0, start + Math.min(body.length, length), start + length);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new PageStoreError(
        `cannot read pages ${firstIndex + piece.at}..${firstIndex + piece.at + piece.pages - 1}: ${reason}`,
        {
          migrationId,
          path: `${objects.location} ${key}`,
          cause: error,
        },
      );
    }
  };
  for (let next = 0; next < pieces.length; next += MAX_PARALLEL_READS)
    await Promise.all(pieces.slice(next, next + MAX_PARALLEL_READS).map(readPiece));
}
