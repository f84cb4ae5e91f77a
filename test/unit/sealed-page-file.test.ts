/**
 * Page files sealed at rest (`policy.encrypt`, store/page-seal.ts): what the store holds is
 * ciphertext, the destination with the migration's key reads the pages back exactly, and a slot that
 * was moved, changed or read without the key never yields a page.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DirectoryObjectStore } from '../../store/object/directory-object-store';
import { DirectoryPageStore } from '../../store/directory/directory-page-store';
import { ObjectPageStore } from '../../store/object/object-page-store';
import { migrationDir, PAGE_FILE_HEADER_BYTES } from '../../store/directory/page-file';
import { PageSealer, SEALED_SLOT_BYTES, SEAL_BYTES } from '../../store/page-seal';
import type { PageFile, PageStore } from '../../store/page-store';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { memorySource } from './support/test-object-store';

const PAGE_COUNT = 300; // two chunks on the object store: 256 and 44 pages
const key = randomBytes(32);

function pageOf(seed: number): Buffer {
  return randomBytes(PAGE_SIZE_BYTES).fill(seed, 0, 1);
}

describe('a page sealer', () => {
  const sealer = new PageSealer(key, 'm1');

  it('opens what it sealed, and seals the same page twice under different nonces', () => {
    const page = pageOf(1);
    const first = Buffer.alloc(SEALED_SLOT_BYTES);
    const second = Buffer.alloc(SEALED_SLOT_BYTES);
    sealer.seal(7, page, first);
    sealer.seal(7, page, second);
    const back = Buffer.alloc(PAGE_SIZE_BYTES, 0xff);

    expect(sealer.open(7, first, back)).toBe('page');
    expect(back.equals(page)).toBe(true);
    expect(first.equals(second)).toBe(false);
    expect(first.includes(page.subarray(0, 64))).toBe(false);
  });

  it('reads a slot never written as a zero page, without counting it', () => {
    const before = sealer.rejectedSlots;
    const back = Buffer.alloc(PAGE_SIZE_BYTES, 0xff);

    expect(sealer.open(3, Buffer.alloc(SEALED_SLOT_BYTES), back)).toBe('never-written');
    expect(back.equals(Buffer.alloc(PAGE_SIZE_BYTES))).toBe(true);
    expect(sealer.rejectedSlots).toBe(before);
  });

  it.each([
    ['moved to another page', (slot: Buffer) => ({ slot, index: 8, sealer })],
    ['of another migration', (slot: Buffer) => ({ slot, index: 7, sealer: new PageSealer(key, 'm2') })],
    ['under another key', (slot: Buffer) => ({ slot, index: 7, sealer: new PageSealer(randomBytes(32), 'm1') })],
    ['with one ciphertext bit flipped', (slot: Buffer) => ({ slot: flip(slot, SEAL_BYTES + 100), index: 7, sealer })],
    ['with one tag bit flipped', (slot: Buffer) => ({ slot: flip(slot, 20), index: 7, sealer })],
    ['torn: half new, half zero', (slot: Buffer) => ({ slot: slot.fill(0, 2048), index: 7, sealer })],
  ])('refuses a slot %s: zeros, counted', (_, change) => {
    const slot = Buffer.alloc(SEALED_SLOT_BYTES);
    sealer.seal(7, pageOf(2), slot);
    const { slot: changed, index, sealer: reader } = change(slot);
    const before = reader.rejectedSlots;
    const back = Buffer.alloc(PAGE_SIZE_BYTES, 0xff);

    expect(reader.open(index, changed, back)).toBe('rejected');
    expect(back.equals(Buffer.alloc(PAGE_SIZE_BYTES))).toBe(true);
    expect(reader.rejectedSlots).toBe(before + 1);
  });

  it('refuses a key of the wrong length', () => {
    expect(() => new PageSealer(randomBytes(16), 'm1')).toThrow('a migration key must be 32 bytes, got 16');
  });
});

function flip(slot: Buffer, at: number): Buffer {
  slot[at] = (slot[at] as number) ^ 1;
  return slot;
}

describe.each([
  ['a directory store', (dir: string): PageStore => new DirectoryPageStore(dir)],
  ['an object store', (dir: string): PageStore => new ObjectPageStore(new DirectoryObjectStore(dir), dir)],
])('a page file sealed at rest on %s', (_, storeIn) => {
  let dir: string;
  let memory: GuestMemory;
  const open: PageFile[] = [];
  const written = [0, 1, 2, 100, 255, 256, 299];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-sealed-'));
    memory = GuestMemory.create(PAGE_COUNT);
    written.forEach((index, k) => memory.writePage(index, k + 1, 40 + k));
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((file) => file.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function keep(file: Promise<PageFile>): Promise<PageFile> {
    open.push(await file);
    return open[open.length - 1] as PageFile;
  }

  async function writeAll(sealed: boolean): Promise<void> {
    const file = await keep(
      storeIn(dir).createPageFile(
        { migrationId: 'm1', vmId: 'vm1', pageCount: PAGE_COUNT },
        memorySource(memory),
        sealed ? { migrationKey: key } : {},
      ),
    );
    file.writePages(
      written.map((index) => ({ index, version: memory.meta[index * 2] as number })),
      Buffer.concat(written.map((index) => Buffer.from(memory.page(index)))),
    );
    await file.sync();
  }

  /** Every byte the store keeps for the migration, whatever its layout. */
  function storedBytes(): Buffer {
    const files: string[] = [];
    const walk = (at: string): void => {
      for (const entry of fs.readdirSync(at, { withFileTypes: true }))
        if (entry.isDirectory()) walk(path.join(at, entry.name));
        else files.push(path.join(at, entry.name));
    };
    walk(dir);
    return Buffer.concat(files.map((file) => fs.readFileSync(file)));
  }

  it('holds no written page in clear, and gives every page back to a reader with the key', async () => {
    await writeAll(true);
    const reader = await keep(storeIn(dir).openPageFile('m1', { migrationKey: key }));
    const back = Buffer.alloc(PAGE_COUNT * PAGE_SIZE_BYTES, 0xff);
    await reader.readPages(0, PAGE_COUNT, back);

    expect(reader.header.sealed).toBe(true);
    expect(back.equals(memory.bytes)).toBe(true);
    expect(reader.rejectedSlots).toBe(0);
    const stored = storedBytes();
    // The page's body, past its 16-byte self-check header: the same bytes in clear would be found.
    for (const index of written) expect(stored.includes(memory.page(index).subarray(16, 80))).toBe(false);
  });

  it('holds the pages in clear when the migration does not encrypt (the check above can fail)', async () => {
    await writeAll(false);
    const stored = storedBytes();

    for (const index of written) expect(stored.includes(memory.page(index).subarray(16, 80))).toBe(true);
  });

  it('refuses to open a sealed file without the key, naming why', async () => {
    await writeAll(true);

    await expect(storeIn(dir).openPageFile('m1')).rejects.toThrow(/sealed at rest, and no migration key was given/);
  });

  it('refuses to reopen a file for writing the other way than it was created', async () => {
    await writeAll(false);
    const reopen = storeIn(dir).createPageFile(
      { migrationId: 'm1', vmId: 'vm1', pageCount: PAGE_COUNT },
      memorySource(memory),
      { migrationKey: key },
    );

    await expect(reopen).rejects.toThrow(/clear pages, and this migration encrypts them/);
  });

  it('reads a clear file with the key as it is (the destination always holds the key)', async () => {
    await writeAll(false);
    const reader = await keep(storeIn(dir).openPageFile('m1', { migrationKey: key }));
    const back = Buffer.alloc(PAGE_SIZE_BYTES);
    await reader.readPages(100, 1, back);

    expect(reader.header.sealed).toBeUndefined();
    expect(back.equals(memory.page(100))).toBe(true);
  });
});

describe('a sealed page file on a directory store', () => {
  it('keeps slot i at a fixed offset, and reads a slot someone changed as not held', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-sealed-dir-'));
    try {
      const memory = GuestMemory.create(8);
      memory.writePage(5, 3, 9);
      const store = new DirectoryPageStore(dir);
      const writer = await store.createPageFile(
        { migrationId: 'm1', vmId: 'vm1', pageCount: 8 },
        memorySource(memory),
        {
          migrationKey: key,
        },
      );
      writer.writePages([{ index: 5, version: 3 }], Buffer.from(memory.page(5)));
      await writer.sync();
      await writer.close();
      const file = path.join(migrationDir(dir, 'm1'), 'pages.ferry');
      expect(fs.statSync(file).size).toBe(PAGE_FILE_HEADER_BYTES + 8 * SEALED_SLOT_BYTES);

      const reader = await store.openPageFile('m1', { migrationKey: key });
      const back = Buffer.alloc(PAGE_SIZE_BYTES);
      await reader.readPages(5, 1, back);
      expect(back.equals(memory.page(5))).toBe(true);

      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, Buffer.from([0xee]), 0, 1, PAGE_FILE_HEADER_BYTES + 5 * SEALED_SLOT_BYTES + SEAL_BYTES + 9);
      fs.closeSync(fd);
      await reader.readPages(5, 1, back);
      expect(back.equals(Buffer.alloc(PAGE_SIZE_BYTES))).toBe(true);
      expect(reader.rejectedSlots).toBe(1);
      await reader.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
