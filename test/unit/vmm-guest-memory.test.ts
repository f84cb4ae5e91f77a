import { deflateSync } from 'node:zlib';
import { GuestMemory, PAGE_HEADER_BYTES, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { fillPages } from '../../vmm/memory-fill';

function copyAll(from: GuestMemory, to: GuestMemory): boolean[] {
  const results: boolean[] = [];
  for (let i = 0; i < from.pageCount; i += 1) results.push(to.applyPage(i, Buffer.from(from.page(i))));
  return results;
}

describe('GuestMemory', () => {
  it('starts zeroed, with every page valid and nothing dirty', () => {
    const memory = GuestMemory.create(100);
    expect(memory.bytes.length).toBe(100 * PAGE_SIZE_BYTES);
    expect(memory.isZeroPage(0)).toBe(true);
    expect(memory.verifyAll()).toEqual({ badPages: [], checked: 100 });
    expect(memory.collectDirty()).toHaveLength(0);
  });

  it('writes self-checking pages whose header, meta and dirty bit agree', () => {
    const memory = GuestMemory.create(8);
    memory.writePage(5, 3, 42);
    const page = memory.page(5);
    expect(page.readUInt32LE(0)).toBe(5);
    expect(page.readUInt32LE(4)).toBe(3);
    expect(Array.from(memory.meta.subarray(10, 12))).toEqual([3, page.readUInt32LE(8)]);
    expect(memory.checkPage(5)).toBe(true);
    expect(memory.isZeroPage(5)).toBe(false);
    expect(Array.from(memory.collectDirty())).toEqual([5]);
  });

  it('derives page content from seed, index and generation only, and it does not compress', () => {
    const a = GuestMemory.create(4);
    const b = GuestMemory.create(4);
    a.writePage(1, 7, 99);
    b.writePage(1, 7, 99);
    expect(a.page(1).equals(b.page(1))).toBe(true);
    b.writePage(1, 8, 99);
    expect(a.page(1).subarray(PAGE_HEADER_BYTES).equals(b.page(1).subarray(PAGE_HEADER_BYTES))).toBe(false);
    b.writePage(2, 7, 99);
    expect(a.page(1).subarray(PAGE_HEADER_BYTES).equals(b.page(2).subarray(PAGE_HEADER_BYTES))).toBe(false);
    expect(deflateSync(a.page(1)).length).toBeGreaterThan(PAGE_SIZE_BYTES - 100);
  });

  it('detects a corrupted byte, a page under the wrong index and meta that disagrees', () => {
    const memory = GuestMemory.create(4);
    for (let i = 0; i < 4; i += 1) memory.writePage(i, 1, 1);
    memory.page(1).writeUInt8(memory.page(1).readUInt8(2000) ^ 0xff, 2000);
    memory.page(0).copy(memory.page(2));
    memory.meta[3 * 2] = 9;
    expect(memory.checkPage(1)).toBe(false);
    expect(memory.checkPage(2)).toBe(false);
    expect(memory.verifyAll().badPages).toEqual([1, 2, 3]);
  });

  it('gives equal digests and identical memory after every page is copied to a destination', async () => {
    const source = GuestMemory.create(512);
    await fillPages(source, { pageCount: 400, seed: 5 });
    source.writePage(10, 2, 5);
    const destination = GuestMemory.create(512);
    expect(destination.digest()).not.toBe(source.digest());
    expect(copyAll(source, destination).every(Boolean)).toBe(true);
    expect(destination.digest()).toBe(source.digest());
    expect(destination.bytes.equals(source.bytes)).toBe(true);
    expect(destination.verifyAll().badPages).toEqual([]);
    expect(Array.from(destination.meta.subarray(1000, 1002))).toEqual([0, 0]);
  });

  it('reports a torn page (new content under an old header) and records the crc it computed', () => {
    const source = GuestMemory.create(2);
    source.writePage(1, 1, 3);
    const torn = Buffer.from(source.page(1));
    source.writePage(1, 2, 3);
    source.page(1).copy(torn, PAGE_HEADER_BYTES, PAGE_HEADER_BYTES);
    const destination = GuestMemory.create(2);
    expect(destination.applyPage(1, torn)).toBe(false);
    expect(destination.meta[2]).toBe(1);
    expect(destination.meta[3]).toBe(source.meta[3]);
    expect(destination.digest()).not.toBe(source.digest());
    expect(destination.applyPage(1, Buffer.from(source.page(1)))).toBe(true);
    expect(destination.digest()).toBe(source.digest());
  });

  it('sets meta to [0, 0] for a zero page applied over a written one', () => {
    const memory = GuestMemory.create(2);
    memory.writePage(0, 4, 1);
    expect(memory.applyPage(0, Buffer.alloc(PAGE_SIZE_BYTES))).toBe(true);
    expect(Array.from(memory.meta.subarray(0, 2))).toEqual([0, 0]);
  });

  it('takes and clears the dirty log in one step, in ascending order', () => {
    const memory = GuestMemory.create(100);
    for (const i of [99, 3, 64, 31, 32, 0]) memory.markDirty(i);
    expect(Array.from(memory.collectDirty())).toEqual([0, 3, 31, 32, 64, 99]);
    expect(memory.collectDirty()).toHaveLength(0);
    memory.markAllDirty();
    const all = memory.collectDirty();
    expect(all).toHaveLength(100);
    expect(all[99]).toBe(99);
  });

  it('shares memory, meta and dirty log with an instance opened from its buffers', () => {
    const memory = GuestMemory.create(64);
    const twin = GuestMemory.fromShared(memory.shared());
    twin.writePage(33, 1, 8);
    expect(memory.checkPage(33)).toBe(true);
    expect(memory.digest()).toBe(twin.digest());
    expect(Array.from(memory.collectDirty())).toEqual([33]);
    expect(twin.collectDirty()).toHaveLength(0);
  });

  it('rejects bad page indices, sizes and page sources with RangeError', () => {
    const memory = GuestMemory.create(4);
    expect(() => memory.page(4)).toThrow(/page index must be an integer in \[0, 4\), got 4/);
    expect(() => memory.writePage(-1, 1, 1)).toThrow(RangeError);
    expect(() => memory.applyPage(0, Buffer.alloc(10))).toThrow(/4096 bytes, got 10/);
    expect(() => GuestMemory.create(0)).toThrow(/pageCount must be a positive integer, got 0/);
  });

  it('fills memory over several threads with the same pages as one thread', async () => {
    const threaded = GuestMemory.create(10_000);
    const single = GuestMemory.create(10_000);
    await fillPages(threaded, { seed: 9, threads: 2 });
    await fillPages(single, { seed: 9, threads: 1 });
    expect(threaded.bytes.equals(single.bytes)).toBe(true);
    expect(threaded.collectDirty()).toHaveLength(10_000);
  });
});
