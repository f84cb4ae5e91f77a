import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import {
  assertStoreWritable,
  migrationDir,
  PageFile,
  removeMigrationFiles,
  type PageEntry,
} from '../../store/directory/page-file';

const PAGE_COUNT = 16;

/** A copy of page `index` of `memory` (the page file keeps the buffers it is handed). */
function copyOf(memory: GuestMemory, index: number): Buffer {
  return Buffer.from(memory.page(index));
}

/** Entries and data for `indexes` of `memory`, each page at its current generation. */
function batch(memory: GuestMemory, indexes: readonly number[]): { entries: PageEntry[]; data: Buffer } {
  return {
    entries: indexes.map((index) => ({ index, version: memory.page(index).readUInt32LE(4) })),
    data: Buffer.concat(indexes.map((i) => copyOf(memory, i))),
  };
}

async function readPage(file: PageFile, index: number): Promise<Buffer> {
  const target = Buffer.alloc(PAGE_SIZE_BYTES);
  await file.readPage(index, target);
  return target;
}

describe('page file on a shared directory', () => {
  let storeDir: string;
  const open: PageFile[] = [];

  beforeEach(() => {
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-page-file-'));
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((f) => f.close()));
    fs.rmSync(storeDir, { recursive: true, force: true });
  });

  async function create(migrationId = 'm1'): Promise<PageFile> {
    const file = await PageFile.create(storeDir, { migrationId, vmId: 'vm1', pageCount: PAGE_COUNT });
    open.push(file);
    return file;
  }

  async function reopen(migrationId = 'm1'): Promise<PageFile> {
    const file = await PageFile.open(storeDir, migrationId);
    open.push(file);
    return file;
  }

  it('holds the written pages at their versions once synced, and reads them back byte for byte', async () => {
    const memory = GuestMemory.create(PAGE_COUNT);
    for (const i of [1, 2, 3, 7, 12]) memory.writePage(i, i * 10, 5);
    const file = await create();
    const { entries, data } = batch(memory, [1, 2, 3, 7, 12]);

    file.writePages(entries, data);
    const synced = await file.sync();

    expect(Array.from(synced)).toEqual(
      Array.from({ length: PAGE_COUNT }, (_, i) => ([1, 2, 3, 7, 12].includes(i) ? i * 10 : 0)),
    );
    expect(file.pendingBytes).toBe(0);
    for (const i of [1, 2, 3, 7, 12]) expect((await readPage(file, i)).equals(memory.page(i))).toBe(true);
    expect((await readPage(file, 0)).equals(Buffer.alloc(PAGE_SIZE_BYTES))).toBe(true);
  });

  it('records the migration, VM and page count in a header that a reader sees when it reopens the file', async () => {
    await create('m-header');
    const reader = await reopen('m-header');
    expect(reader.header).toEqual({ migrationId: 'm-header', vmId: 'vm1', pageCount: PAGE_COUNT });
  });

  it('leaves the newest version of a page that was queued many times without waiting in between', async () => {
    const memory = GuestMemory.create(PAGE_COUNT);
    const file = await create();
    for (let generation = 1; generation <= 50; generation += 1) {
      memory.writePage(4, generation, 9);
      memory.writePage(5, generation, 9);
      // Alternate single pages and a consecutive run, so both write paths are queued.
      const { entries, data } = generation % 2 === 0 ? batch(memory, [4, 5]) : batch(memory, [4]);
      file.writePages(entries, data);
    }
    const synced = await file.sync();

    expect(synced[4]).toBe(50);
    expect((await readPage(file, 4)).equals(memory.page(4))).toBe(true);
    expect((await readPage(file, 4)).readUInt32LE(4)).toBe(50);
    expect(synced[5]).toBe(50);
    expect((await readPage(file, 5)).equals(memory.page(5))).toBe(true);
  });

  it('writes the final manifest so that a reader gets it back', async () => {
    const file = await create();
    expect(await file.readFinalManifest()).toBeUndefined();
    await file.writeManifest({
      round: 3,
      final: true,
      indexes: Uint32Array.from([1, 2]),
      versions: Uint32Array.from([4, 5]),
      finalSeq: 99,
      digest: 'ab'.repeat(32),
    });

    const reader = await reopen();
    const manifest = await reader.readFinalManifest();
    expect(manifest).toMatchObject({ round: 3, final: true, finalSeq: 99, digest: 'ab'.repeat(32) });
    expect(Array.from(manifest?.indexes ?? [])).toEqual([1, 2]);
    expect(Array.from(manifest?.versions ?? [])).toEqual([4, 5]);
  });

  it('counts as synced, after reopening, the highest version any round manifest lists', async () => {
    const memory = GuestMemory.create(PAGE_COUNT);
    const file = await create();
    memory.writePage(2, 1, 3);
    memory.writePage(6, 1, 3);
    const first = batch(memory, [2, 6]);
    file.writePages(first.entries, first.data);
    await file.sync();
    await file.writeManifest({
      round: 0,
      final: false,
      indexes: Uint32Array.from([2, 6]),
      versions: Uint32Array.from([1, 1]),
      finalSeq: 0,
      digest: '',
    });
    memory.writePage(6, 2, 3);
    const second = batch(memory, [6]);
    file.writePages(second.entries, second.data);
    await file.sync();
    await file.writeManifest({
      round: 1,
      final: false,
      indexes: Uint32Array.from([6]),
      versions: Uint32Array.from([2]),
      finalSeq: 0,
      digest: '',
    });

    const reader = await reopen();
    expect(reader.syncedVersions[2]).toBe(1);
    expect(reader.syncedVersions[6]).toBe(2);
    expect(Array.from(reader.syncedVersions).filter((v) => v !== 0)).toHaveLength(2);
    expect((await readPage(reader, 6)).equals(memory.page(6))).toBe(true);
  });

  it('reopens an existing page file through create without losing its pages', async () => {
    const memory = GuestMemory.create(PAGE_COUNT);
    memory.writePage(9, 4, 1);
    const file = await create();
    const { entries, data } = batch(memory, [9]);
    file.writePages(entries, data);
    await file.sync();
    await file.writeManifest({
      round: 0,
      final: false,
      indexes: Uint32Array.from([9]),
      versions: Uint32Array.from([4]),
      finalSeq: 0,
      digest: '',
    });

    const again = await create();
    expect(again.syncedVersions[9]).toBe(4);
    expect((await readPage(again, 9)).equals(memory.page(9))).toBe(true);
  });

  it('fails to open a page file that does not exist with a PageStoreError naming the migration', async () => {
    await expect(PageFile.open(storeDir, 'nope')).rejects.toMatchObject({
      name: 'PageStoreError',
      migrationId: 'nope',
      message: expect.stringContaining('migration=nope'),
    });
  });

  it('reports an unwritable store as StoreUnavailableError naming the directory', async () => {
    const regularFile = path.join(storeDir, 'not-a-dir');
    fs.writeFileSync(regularFile, 'x');
    const unwritable = path.join(regularFile, 'store');

    await expect(assertStoreWritable(unwritable)).rejects.toMatchObject({
      name: 'StoreUnavailableError',
      storeDir: unwritable,
      message: expect.stringContaining(unwritable),
    });
  });

  it('accepts a writable store directory, creating it and leaving no probe file behind', async () => {
    const fresh = path.join(storeDir, 'a', 'b');
    await assertStoreWritable(fresh);
    expect(fs.readdirSync(fresh)).toEqual([]);
  });

  it('removes the migration folder, and does not mind when it is already gone', async () => {
    const file = await create('m-gone');
    await file.writeManifest({
      round: 0,
      final: false,
      indexes: new Uint32Array(0),
      versions: new Uint32Array(0),
      finalSeq: 0,
      digest: '',
    });
    await create('m-kept');
    expect(fs.existsSync(migrationDir(storeDir, 'm-gone'))).toBe(true);

    await removeMigrationFiles(storeDir, 'm-gone');
    await removeMigrationFiles(storeDir, 'm-gone');

    expect(fs.existsSync(migrationDir(storeDir, 'm-gone'))).toBe(false);
    expect(fs.existsSync(migrationDir(storeDir, 'm-kept'))).toBe(true);
  });
});
