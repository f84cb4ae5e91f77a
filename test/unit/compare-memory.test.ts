import { compareMemory } from '../../verification/compare-memory';
import { GuestMemory } from '../../vmm/guest-memory';

const PAGE_COUNT = 32;

/** Source memory at stun: every third page never written, the rest at generation 1..3. */
function sourceAtStun(): GuestMemory {
  const memory = GuestMemory.create(PAGE_COUNT);
  for (let i = 0; i < PAGE_COUNT; i += 1) if (i % 3 !== 0) memory.writePage(i, 1 + (i % 3), 11);
  return memory;
}

/** A destination that received every page of `source`. */
function copyOf(source: GuestMemory): GuestMemory {
  const destination = GuestMemory.create(source.pageCount);
  for (let i = 0; i < source.pageCount; i += 1) destination.applyPage(i, Buffer.from(source.page(i)));
  return destination;
}

describe('compareMemory', () => {
  it('finds identical memories identical', () => {
    const source = sourceAtStun();
    const result = compareMemory(source.bytes, copyOf(source).bytes);
    expect(result).toEqual({
      ok: true,
      pages: PAGE_COUNT,
      identical: PAGE_COUNT,
      rewrittenAfterResume: 0,
      mismatched: [],
      details: [],
    });
  });

  it('accepts pages the guest rewrote with a newer generation after resuming, and counts them', () => {
    const source = sourceAtStun();
    const destination = copyOf(source);
    destination.writePage(4, 9, 11);
    destination.writePage(6, 1, 11); // was never written on the source (generation 0)

    const result = compareMemory(source.bytes, destination.bytes);
    expect(result).toMatchObject({ ok: true, identical: PAGE_COUNT - 2, rewrittenAfterResume: 2, mismatched: [] });
  });

  it('reports a page with the same generation but different bytes as a mismatch', () => {
    const source = sourceAtStun();
    const destination = copyOf(source);
    destination.writePage(5, source.page(5).readUInt32LE(4), 12345); // same generation, other content

    const result = compareMemory(source.bytes, destination.bytes);
    expect(result.ok).toBe(false);
    expect(result.mismatched).toEqual([5]);
    expect(result.details).toEqual([
      expect.stringContaining('page 5: generation 3 on both sides but the bytes differ'),
    ]);
  });

  it('reports a page the destination holds at an older generation as lost data', () => {
    const source = sourceAtStun();
    const destination = copyOf(source);
    destination.writePage(8, 1, 11); // source holds generation 3

    const result = compareMemory(source.bytes, destination.bytes);
    expect(result.ok).toBe(false);
    expect(result.mismatched).toEqual([8]);
    expect(result.details[0]).toBe('page 8: source generation 3, destination generation 1 (older)');
  });

  it('reports a page the destination never received as lost data', () => {
    const source = sourceAtStun();
    const destination = copyOf(source);
    destination.bytes.fill(0, 7 * 4096, 8 * 4096);

    expect(compareMemory(source.bytes, destination.bytes)).toMatchObject({ ok: false, mismatched: [7] });
  });

  it('reports a newer page that fails its self-check as a mismatch, not a rewrite', () => {
    const source = sourceAtStun();
    const destination = copyOf(source);
    destination.writePage(10, 8, 11);
    const at = 10 * 4096 + 100;
    destination.bytes[at] = (destination.bytes[at] as number) ^ 0xff;

    const result = compareMemory(source.bytes, destination.bytes);
    expect(result).toMatchObject({ ok: false, rewrittenAfterResume: 0, mismatched: [10] });
    expect(result.details[0]).toContain('fails its self-check');
  });

  it('lists every mismatched page but describes only the first five', () => {
    const source = sourceAtStun();
    const destination = copyOf(source);
    const broken = [1, 2, 4, 5, 7, 8, 10];
    for (const i of broken) destination.writePage(i, 1 + (i % 3), 99);

    const result = compareMemory(source.bytes, destination.bytes);
    expect(result.mismatched).toEqual(broken);
    expect(result.details).toHaveLength(5);
  });

  it('refuses memories of different sizes', () => {
    expect(() => compareMemory(GuestMemory.create(2).bytes, GuestMemory.create(3).bytes)).toThrow(
      'memory sizes differ: source 8192 bytes, destination 12288 bytes',
    );
  });
});
