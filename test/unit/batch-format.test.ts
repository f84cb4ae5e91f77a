import { randomBytes } from 'node:crypto';
import { BATCH_FLAG_FINAL, BatchBuilder, batchSizeBytes, decodeBatch } from '../../data-plane/batch-format';
import { MAC_BYTES, MessageAuth } from '../../data-plane/message-auth';
import { PageHashes, ZERO_PAGE_HASH, pageHash } from '../../data-plane/page-hashes';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';

const KEY = randomBytes(32);
/** The auth of migration `id` under the test's key. */
const auth = (id: string, key: Buffer = KEY): MessageAuth => new MessageAuth(key, id);

/** Memory of `pageCount` pages where page i has generation `i + 1` unless listed in `zero`. */
function memoryWithPages(pageCount: number, zero: readonly number[] = []): GuestMemory {
  const memory = GuestMemory.create(pageCount);
  for (let i = 0; i < pageCount; i += 1) if (!zero.includes(i)) memory.writePage(i, i + 1, 7);
  return memory;
}

/** Adds every page of `memory` (null for zero pages) and returns the versions addPage gave. */
function addAll(builder: BatchBuilder, memory: GuestMemory, indexes: readonly number[]): number[] {
  return indexes.map((i) => builder.addPage(i, memory.isZeroPage(i) ? null : memory.page(i)));
}

describe('page batch format', () => {
  it('decodes what it encoded: ids, round, seq, flags, entries and the non-zero pages in entry order', () => {
    const memory = memoryWithPages(6, [1, 4]);
    const builder = new BatchBuilder(auth('mig-1'), 6);
    builder.begin();
    addAll(builder, memory, [0, 1, 2, 3, 4, 5]);
    const { frame, pageData } = builder.finish(3, 17, BATCH_FLAG_FINAL);

    const decoded = decodeBatch(frame, auth(builder.migrationId));
    expect(decoded).toMatchObject({ migrationId: 'mig-1', round: 3, seq: 17, flags: BATCH_FLAG_FINAL });
    expect(decoded.entries.map(({ index, version, zero }) => ({ index, version, zero }))).toEqual([
      { index: 0, version: 1, zero: false },
      { index: 1, version: 0, zero: true },
      { index: 2, version: 3, zero: false },
      { index: 3, version: 4, zero: false },
      { index: 4, version: 0, zero: true },
      { index: 5, version: 6, zero: false },
    ]);
    decoded.entries.forEach((e) =>
      expect(e.hash.equals(e.zero ? ZERO_PAGE_HASH : pageHash(memory.page(e.index)))).toBe(true),
    );
    const expected = Buffer.concat([0, 2, 3, 5].map((i) => memory.page(i)));
    expect(decoded.pageData.equals(expected)).toBe(true);
    expect(pageData.equals(expected)).toBe(true);
    expect(frame.length).toBe(batchSizeBytes('mig-1', 6, 4));
  });

  it('carries zero pages as entries without data', () => {
    const memory = GuestMemory.create(4);
    const builder = new BatchBuilder(auth('zeros'), 4);
    builder.begin();
    addAll(builder, memory, [0, 1, 2, 3]);
    const { frame } = builder.finish(0, 1, 0);

    const decoded = decodeBatch(frame, auth(builder.migrationId));
    expect(decoded.entries.every((e) => e.zero && e.version === 0)).toBe(true);
    expect(decoded.pageData.length).toBe(0);
    expect(frame.length).toBe(batchSizeBytes('zeros', 4, 0));
  });

  it('decodes a short final batch, with fewer entries than maxPages, with the right page data', () => {
    const memory = memoryWithPages(10);
    const builder = new BatchBuilder(auth('short'), 128);
    builder.begin();
    addAll(builder, memory, [9, 2, 5]);
    const { frame, pageData } = builder.finish(4, 2, BATCH_FLAG_FINAL);

    const decoded = decodeBatch(frame, auth(builder.migrationId));
    expect(decoded.entries.map((e) => e.index)).toEqual([9, 2, 5]);
    expect(decoded.pageData.length).toBe(3 * PAGE_SIZE_BYTES);
    [9, 2, 5].forEach((index, n) => {
      const page = decoded.pageData.subarray(n * PAGE_SIZE_BYTES, (n + 1) * PAGE_SIZE_BYTES);
      expect(page.equals(memory.page(index))).toBe(true);
    });
    expect(pageData.equals(decoded.pageData)).toBe(true);
  });

  it('returns as the version of a page the generation in the header of the copy it took', () => {
    const memory = GuestMemory.create(3);
    memory.writePage(0, 41, 1);
    memory.writePage(2, 0xfffffffe, 1);
    const builder = new BatchBuilder(auth('versions'), 3);
    builder.begin();
    const versions = addAll(builder, memory, [0, 1, 2]);
    // The guest writing the page after addPage must not change what the batch carries.
    memory.writePage(0, 42, 1);
    const decoded = decodeBatch(builder.finish(0, 1, 0).frame, auth('versions'));

    expect(versions).toEqual([41, 0, 0xfffffffe]);
    expect(decoded.entries.map((e) => e.version)).toEqual(versions);
    expect(decoded.pageData.readUInt32LE(4)).toBe(41);
  });

  it('keeps an earlier batch intact after the builder starts the next one', () => {
    const memory = memoryWithPages(4);
    const builder = new BatchBuilder(auth('two'), 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const first = builder.finish(0, 1, 0).frame;
    builder.begin();
    addAll(builder, memory, [2, 3]);
    const second = builder.finish(0, 2, 0).frame;

    expect(decodeBatch(first, auth('two')).entries.map((e) => e.index)).toEqual([0, 1]);
    expect(decodeBatch(first, auth('two')).pageData.equals(Buffer.concat([memory.page(0), memory.page(1)]))).toBe(true);
    expect(decodeBatch(second, auth('two')).seq).toBe(2);
  });

  it('refuses a page beyond maxPages', () => {
    const memory = memoryWithPages(3);
    const builder = new BatchBuilder(auth('full'), 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    expect(() => builder.addPage(2, memory.page(2))).toThrow(RangeError);
    expect(builder.size).toBe(2);
  });

  it('decodes a batch that sits inside a larger buffer and has a multi-byte migration id', () => {
    const memory = memoryWithPages(2);
    const builder = new BatchBuilder(auth('mé-✓'), 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const { frame } = builder.finish(1, 1, 0);
    const outer = Buffer.alloc(frame.length + 13);
    frame.copy(outer, 5);

    const decoded = decodeBatch(outer.subarray(5, 5 + frame.length), auth('mé-✓'));
    expect(decoded.migrationId).toBe('mé-✓');
    expect(decoded.pageData.equals(Buffer.concat([memory.page(0), memory.page(1)]))).toBe(true);
  });

  it.each([
    ['the header', 9],
    ['an entry', 40],
    ['the MAC', -1],
  ])('rejects a batch with a flipped byte in %s as a BatchFormatError', (_where, at) => {
    const memory = memoryWithPages(2);
    const builder = new BatchBuilder(auth('corrupt'), 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const frame = Buffer.from(builder.finish(0, 1, 0).frame);
    const offset = at < 0 ? frame.length + at : at;
    frame[offset] = (frame[offset] as number) ^ 0x01;

    expect(() => decodeBatch(frame, auth(builder.migrationId))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError' }),
    );
  });

  it('rejects as a BatchFormatError a batch with a flipped byte in its page data: the page no longer matches its hash', () => {
    const memory = memoryWithPages(2);
    const builder = new BatchBuilder(auth('corrupt'), 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const frame = Buffer.from(builder.finish(0, 1, 0).frame);
    frame[frame.length - 100] = (frame[frame.length - 100] as number) ^ 0x01;

    expect(() => decodeBatch(frame, auth('corrupt'))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError', message: expect.stringContaining('content hash') }),
    );
  });

  it('rejects as a BatchFormatError a batch whose entry count runs past its end although its MAC matches', () => {
    const memory = memoryWithPages(1);
    const builder = new BatchBuilder(auth('liar'), 1);
    builder.begin();
    addAll(builder, memory, [0]);
    const frame = Buffer.from(builder.finish(0, 1, 0).frame);
    frame.writeUInt32LE(1_000_000, 16); // entryCount
    auth('liar')
      .mac('batch', frame.subarray(0, frame.length - MAC_BYTES))
      .copy(frame, frame.length - MAC_BYTES);

    expect(() => decodeBatch(frame, auth('liar'))).toThrow(expect.objectContaining({ name: 'BatchFormatError' }));
  });

  it('rejects a batch sealed under another key, or for another migration, as a BatchFormatError', () => {
    const memory = memoryWithPages(2);
    const builder = new BatchBuilder(auth('earlier', randomBytes(32)), 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const replayed = builder.finish(0, 1, 0).frame;
    expect(() => decodeBatch(replayed, auth('earlier'))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError', message: expect.stringContaining('MAC') }),
    );
    const other = new BatchBuilder(auth('other'), 2);
    other.begin();
    addAll(other, memory, [0, 1]);
    expect(() => decodeBatch(other.finish(0, 1, 0).frame, auth('this'))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError' }),
    );
  });

  it('records the hash of every page copy it adds, and the zero hash for a zero entry', () => {
    const memory = memoryWithPages(3);
    const hashes = new PageHashes(3);
    const builder = new BatchBuilder(auth('record'), 3, hashes);
    builder.begin();
    builder.addPage(0, memory.page(0));
    builder.addPage(2, null);
    expect(hashes.table.subarray(0, 16).equals(pageHash(memory.page(0)))).toBe(true);
    expect(hashes.table.subarray(32, 48).equals(ZERO_PAGE_HASH)).toBe(true);
  });

  it('rejects a truncated batch and bytes that are not a batch', () => {
    const memory = memoryWithPages(1);
    const builder = new BatchBuilder(auth('cut'), 1);
    builder.begin();
    addAll(builder, memory, [0]);
    const frame = builder.finish(0, 1, 0).frame;

    expect(() => decodeBatch(frame.subarray(0, frame.length - PAGE_SIZE_BYTES), auth('cut'))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError' }),
    );
    expect(() => decodeBatch(Buffer.from('hello, this is not a batch at all'), auth('cut'))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError', message: 'not a ferry page batch' }),
    );
  });
});
