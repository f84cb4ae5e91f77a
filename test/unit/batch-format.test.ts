import { crc32 } from 'node:zlib';
import { BATCH_FLAG_FINAL, BatchBuilder, batchSizeBytes, decodeBatch } from '../../data-plane/batch-format';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';

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
    const builder = new BatchBuilder('mig-1', 6);
    builder.begin();
    addAll(builder, memory, [0, 1, 2, 3, 4, 5]);
    const { frame, pageData } = builder.finish(3, 17, BATCH_FLAG_FINAL);

    const decoded = decodeBatch(frame);
    expect(decoded).toMatchObject({ migrationId: 'mig-1', round: 3, seq: 17, flags: BATCH_FLAG_FINAL });
    expect(decoded.entries).toEqual([
      { index: 0, version: 1, zero: false },
      { index: 1, version: 0, zero: true },
      { index: 2, version: 3, zero: false },
      { index: 3, version: 4, zero: false },
      { index: 4, version: 0, zero: true },
      { index: 5, version: 6, zero: false },
    ]);
    const expected = Buffer.concat([0, 2, 3, 5].map((i) => memory.page(i)));
    expect(decoded.pageData.equals(expected)).toBe(true);
    expect(pageData.equals(expected)).toBe(true);
    expect(frame.length).toBe(batchSizeBytes('mig-1', 6, 4));
  });

  it('carries zero pages as entries without data', () => {
    const memory = GuestMemory.create(4);
    const builder = new BatchBuilder('zeros', 4);
    builder.begin();
    addAll(builder, memory, [0, 1, 2, 3]);
    const { frame } = builder.finish(0, 1, 0);

    const decoded = decodeBatch(frame);
    expect(decoded.entries.every((e) => e.zero && e.version === 0)).toBe(true);
    expect(decoded.pageData.length).toBe(0);
    expect(frame.length).toBe(batchSizeBytes('zeros', 4, 0));
  });

  it('decodes a short final batch, with fewer entries than maxPages, with the right page data', () => {
    const memory = memoryWithPages(10);
    const builder = new BatchBuilder('short', 128);
    builder.begin();
    addAll(builder, memory, [9, 2, 5]);
    const { frame, pageData } = builder.finish(4, 2, BATCH_FLAG_FINAL);

    const decoded = decodeBatch(frame);
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
    const builder = new BatchBuilder('versions', 3);
    builder.begin();
    const versions = addAll(builder, memory, [0, 1, 2]);
    // The guest writing the page after addPage must not change what the batch carries.
    memory.writePage(0, 42, 1);
    const decoded = decodeBatch(builder.finish(0, 1, 0).frame);

    expect(versions).toEqual([41, 0, 0xfffffffe]);
    expect(decoded.entries.map((e) => e.version)).toEqual(versions);
    expect(decoded.pageData.readUInt32LE(4)).toBe(41);
  });

  it('keeps an earlier batch intact after the builder starts the next one', () => {
    const memory = memoryWithPages(4);
    const builder = new BatchBuilder('two', 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const first = builder.finish(0, 1, 0).frame;
    builder.begin();
    addAll(builder, memory, [2, 3]);
    const second = builder.finish(0, 2, 0).frame;

    expect(decodeBatch(first).entries.map((e) => e.index)).toEqual([0, 1]);
    expect(decodeBatch(first).pageData.equals(Buffer.concat([memory.page(0), memory.page(1)]))).toBe(true);
    expect(decodeBatch(second).seq).toBe(2);
  });

  it('refuses a page beyond maxPages', () => {
    const memory = memoryWithPages(3);
    const builder = new BatchBuilder('full', 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    expect(() => builder.addPage(2, memory.page(2))).toThrow(RangeError);
    expect(builder.size).toBe(2);
  });

  it('decodes a batch that sits inside a larger buffer and has a multi-byte migration id', () => {
    const memory = memoryWithPages(2);
    const builder = new BatchBuilder('mé-✓', 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const { frame } = builder.finish(1, 1, 0);
    const outer = Buffer.alloc(frame.length + 13);
    frame.copy(outer, 5);

    const decoded = decodeBatch(outer.subarray(5, 5 + frame.length));
    expect(decoded.migrationId).toBe('mé-✓');
    expect(decoded.pageData.equals(Buffer.concat([memory.page(0), memory.page(1)]))).toBe(true);
  });

  it.each([
    ['the header', 9],
    ['an entry', 40],
    ['the checksum', -1],
  ])('rejects a batch with a flipped byte in %s as a BatchFormatError', (_where, at) => {
    const memory = memoryWithPages(2);
    const builder = new BatchBuilder('corrupt', 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const frame = Buffer.from(builder.finish(0, 1, 0).frame);
    const offset = at < 0 ? frame.length + at : at;
    frame[offset] = (frame[offset] as number) ^ 0x01;

    expect(() => decodeBatch(frame)).toThrow(expect.objectContaining({ name: 'BatchFormatError' }));
  });

  it('leaves a flipped byte in page data to the page self-check, which the receiver runs on apply', () => {
    const memory = memoryWithPages(2);
    const builder = new BatchBuilder('corrupt', 2);
    builder.begin();
    addAll(builder, memory, [0, 1]);
    const frame = Buffer.from(builder.finish(0, 1, 0).frame);
    frame[frame.length - 100] = (frame[frame.length - 100] as number) ^ 0x01;

    const decoded = decodeBatch(frame);
    const receiver = GuestMemory.create(2);
    expect(receiver.applyPage(0, decoded.pageData.subarray(0, PAGE_SIZE_BYTES))).toBe(true);
    expect(receiver.applyPage(1, decoded.pageData.subarray(PAGE_SIZE_BYTES, 2 * PAGE_SIZE_BYTES))).toBe(false);
  });

  it('rejects as a BatchFormatError a batch whose entry count runs past its end although its checksum matches', () => {
    const memory = memoryWithPages(1);
    const builder = new BatchBuilder('liar', 1);
    builder.begin();
    addAll(builder, memory, [0]);
    const frame = Buffer.from(builder.finish(0, 1, 0).frame);
    frame.writeUInt32LE(1_000_000, 16); // entryCount
    frame.writeUInt32LE(crc32(frame.subarray(0, frame.length - 4)), frame.length - 4);

    expect(() => decodeBatch(frame)).toThrow(expect.objectContaining({ name: 'BatchFormatError' }));
  });

  it('rejects a truncated batch and bytes that are not a batch', () => {
    const memory = memoryWithPages(1);
    const builder = new BatchBuilder('cut', 1);
    builder.begin();
    addAll(builder, memory, [0]);
    const frame = builder.finish(0, 1, 0).frame;

    expect(() => decodeBatch(frame.subarray(0, frame.length - PAGE_SIZE_BYTES))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError' }),
    );
    expect(() => decodeBatch(Buffer.from('hello, this is not a batch at all'))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError', message: 'not a ferry page batch' }),
    );
  });
});
