/**
 * The switchover's check compares content, not crc32s: a page replaced by other bytes with the
 * same crc32 (forged by solving its last four bytes, crc32 being affine over GF(2)) passes the
 * crc-based digest but fails the keyed content digest, whether it comes from the page file or on
 * the stream.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { GuestMemory, PAGE_HEADER_BYTES, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { DirectoryPageStore } from '../../store/directory/directory-page-store';
import { fillAndVerify } from '../../data-plane/final-fill';
import { MessageAuth } from '../../data-plane/message-auth';
import { PageHashes } from '../../data-plane/page-hashes';
import { BatchBuilder, decodeBatch } from '../../data-plane/batch-format';

const PAGE_COUNT = 16;
const FORGED = 5;
const MIGRATION = 'm-forged';

/**
 * `data` with its last four bytes changed so that its crc32 is `target`. crc32 is affine: the
 * crc of a message with v in its last four bytes is crc(message with zeros there) xor L(v), for a
 * linear and invertible L, solved here by Gaussian elimination over GF(2).
 */
function withCrc32(data: Buffer, target: number): Buffer {
  const out = Buffer.from(data);
  const at = out.length - 4;
  out.writeUInt32LE(0, at);
  const zero = Buffer.alloc(out.length);
  const base = crc32(zero);
  // Column b: what setting bit b of the last four bytes does to the crc.
  const columns = Array.from({ length: 32 }, (_, b) => {
    const e = Buffer.alloc(out.length);
    e.writeUInt32LE((1 << b) >>> 0, at);
    return (crc32(e) ^ base) >>> 0;
  });
  const want = (target ^ crc32(out)) >>> 0;
  // Solve sum(v_b * column_b) = want: rows are crc bits, augmented with the wanted bit.
  const rows = Array.from({ length: 32 }, (_, r) => {
    let row = 0n;
    for (let b = 0; b < 32; b += 1) if (((columns[b] as number) >>> r) & 1) row |= 1n << BigInt(b);
    return { row, rhs: (want >>> r) & 1 };
  });
  const pivotOf: number[] = [];
  let rank = 0;
  for (let b = 0; b < 32; b += 1) {
    const p = rows.findIndex((r, i) => i >= rank && ((r.row >> BigInt(b)) & 1n) === 1n);
    if (p < 0) continue;
    [rows[rank], rows[p]] = [rows[p]!, rows[rank]!];
    const pivot = rows[rank]!;
    rows.forEach((r, i) => {
      if (i !== rank && ((r.row >> BigInt(b)) & 1n) === 1n) {
        r.row ^= pivot.row;
        r.rhs ^= pivot.rhs;
      }
    });
    pivotOf[rank] = b;
    rank += 1;
  }
  let v = 0;
  for (let i = 0; i < rank; i += 1) if (rows[i]!.rhs) v |= 1 << pivotOf[i]!;
  out.writeUInt32LE(v >>> 0, at);
  return out;
}

/** Page `index` of `memory` with other content and the same header: same generation, same crc32. */
function forgePage(memory: GuestMemory, index: number): Buffer {
  const page = Buffer.from(memory.page(index));
  page.fill(0x5a, 100, 200);
  const body = withCrc32(page.subarray(PAGE_HEADER_BYTES), page.readUInt32LE(8));
  body.copy(page, PAGE_HEADER_BYTES);
  return page;
}

describe('content digest', () => {
  let storeDir: string;
  const auth = new MessageAuth(randomBytes(32), MIGRATION);

  beforeEach(() => {
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-content-'));
  });
  afterEach(() => fs.rmSync(storeDir, { recursive: true, force: true }));

  function sourceMemory(): { memory: GuestMemory; hashes: PageHashes } {
    const memory = GuestMemory.create(PAGE_COUNT);
    for (let i = 0; i < PAGE_COUNT; i += 1) memory.writePage(i, 3, 7);
    // The source's table as the sender records it: the hash of every copy it put into a batch.
    const hashes = new PageHashes(PAGE_COUNT);
    const builder = new BatchBuilder(auth, PAGE_COUNT, hashes);
    builder.begin();
    for (let i = 0; i < PAGE_COUNT; i += 1) builder.addPage(i, memory.page(i));
    return { memory, hashes };
  }

  /** A complete page file of `pages` with its final manifest, as the source leaves it at the handover. */
  async function pageFileOf(pages: Buffer[]): Promise<DirectoryPageStore> {
    const store = new DirectoryPageStore(storeDir);
    const file = await store.createPageFile({ migrationId: MIGRATION, vmId: 'vm', pageCount: PAGE_COUNT });
    const indexes = Uint32Array.from(pages.keys());
    file.writePages(
      Array.from(indexes, (index) => ({ index, version: 3 })),
      Buffer.concat(pages),
    );
    await file.sync();
    await file.writeManifest({
      round: 1,
      final: true,
      indexes,
      versions: indexes.map(() => 3),
      finalSeq: 0,
      digest: '',
    });
    await file.markComplete();
    await file.close();
    return store;
  }

  it('forges a page with the same crc32 and another content', () => {
    const { memory } = sourceMemory();
    const forged = forgePage(memory, FORGED);
    expect(forged.equals(memory.page(FORGED))).toBe(false);
    expect(crc32(forged.subarray(PAGE_HEADER_BYTES))).toBe(crc32(memory.page(FORGED).subarray(PAGE_HEADER_BYTES)));
  });

  it('fails the switchover check when the page file holds a page forged with a matching crc32', async () => {
    const { memory: source, hashes } = sourceMemory();
    const pages = Array.from({ length: PAGE_COUNT }, (_, i) =>
      i === FORGED ? forgePage(source, i) : Buffer.from(source.page(i)),
    );
    const store = await pageFileOf(pages);
    const destination = GuestMemory.create(PAGE_COUNT);

    await expect(
      fillAndVerify({
        store,
        migrationId: MIGRATION,
        memory: destination,
        torn: new Set(),
        digest: source.digest(),
        content: { hashes: new PageHashes(PAGE_COUNT), auth, digest: hashes.digest(auth) },
      }),
    ).rejects.toMatchObject({ name: 'VerificationError', message: expect.stringContaining('content of memory') });
    // The crc-based digest alone would have let the forged page through.
    expect(destination.digest()).toBe(source.digest());
    expect(destination.checkPage(FORGED)).toBe(true);
  });

  it('passes the switchover check when the page file holds the source pages', async () => {
    const { memory: source, hashes } = sourceMemory();
    const store = await pageFileOf(Array.from({ length: PAGE_COUNT }, (_, i) => Buffer.from(source.page(i))));
    const destination = GuestMemory.create(PAGE_COUNT);
    const result = await fillAndVerify({
      store,
      migrationId: MIGRATION,
      memory: destination,
      torn: new Set(),
      digest: source.digest(),
      content: { hashes: new PageHashes(PAGE_COUNT), auth, digest: hashes.digest(auth) },
    });
    expect(result).toMatchObject({ pagesFromStore: PAGE_COUNT, contentDigest: hashes.digest(auth) });
  });

  it('refuses a batch whose page was replaced on the way by one with the same crc32', () => {
    const { memory } = sourceMemory();
    const builder = new BatchBuilder(auth, 2);
    builder.begin();
    builder.addPage(FORGED, memory.page(FORGED));
    const frame = Buffer.from(builder.finish(0, 1, 0).frame);
    const dataStart = frame.length - 16 - PAGE_SIZE_BYTES;
    forgePage(memory, FORGED).copy(frame, dataStart);

    expect(() => decodeBatch(frame, auth)).toThrow(
      expect.objectContaining({ name: 'BatchFormatError', message: expect.stringContaining('content hash') }),
    );
  });
});
