import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DirectoryObjectStore } from '../../store/object/directory-object-store';
import { encodeManifest, type Manifest } from '../../store/manifest-format';
import { ObjectPageStore } from '../../store/object/object-page-store';
import type { PageFile } from '../../store/page-store';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { batchOf, memorySource } from './support/test-object-store';

const PAGE_COUNT = 600; // chunks of 256, 256 and 88 pages
/** A byte inside the index list of a manifest (after its 88-byte fixed part). */
const FINAL_MANIFEST_DAMAGE_AT = 90;

function roundManifest(round: number, indexes: number[], versions: number[]): Manifest {
  const final = false;
  return {
    round,
    final,
    indexes: Uint32Array.from(indexes),
    versions: Uint32Array.from(versions),
    finalSeq: 0,
    digest: '',
  };
}

describe('the object page store on a directory object store', () => {
  let dir: string;
  let objects: DirectoryObjectStore;
  let store: ObjectPageStore;
  const open: PageFile[] = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-object-pages-'));
    objects = new DirectoryObjectStore(dir);
    store = new ObjectPageStore(objects, dir);
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((file) => file.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function writer(memory: GuestMemory, migrationId = 'm1'): Promise<PageFile> {
    const file = await store.createPageFile(
      { migrationId, vmId: 'vm1', pageCount: memory.pageCount },
      memorySource(memory),
    );
    open.push(file);
    return file;
  }

  async function reader(migrationId = 'm1'): Promise<PageFile> {
    const file = await new ObjectPageStore(new DirectoryObjectStore(dir), dir).openPageFile(migrationId);
    open.push(file);
    return file;
  }

  it('uploads marked pages from guest memory in chunk objects that a second store reads back byte for byte', async () => {
    const memory = GuestMemory.create(PAGE_COUNT);
    const written = [0, 3, 255, 256, 300, 511, 512, 599];
    written.forEach((index, k) => memory.writePage(index, k + 1, 7));
    const file = await writer(memory);

    const { entries, data } = batchOf(memory, written);
    file.writePages(entries, data);
    const synced = await file.sync();

    expect(written.map((index) => synced[index])).toEqual(written.map((_, k) => k + 1));
    expect(file.pendingBytes).toBe(0);
    expect(file.bufferedBytes).toBe(0);
    expect(await objects.list('migrations/m1/chunks/')).toEqual([
      'migrations/m1/chunks/00000000',
      'migrations/m1/chunks/00000001',
      'migrations/m1/chunks/00000002',
    ]);
    expect((await objects.head('migrations/m1/chunks/00000002'))?.size).toBe(88 * PAGE_SIZE_BYTES);
    const back = Buffer.alloc(PAGE_COUNT * PAGE_SIZE_BYTES, 0xff);
    await (await reader()).readPages(0, PAGE_COUNT, back);
    expect(back.equals(memory.bytes)).toBe(true);
    const across = Buffer.alloc(40 * PAGE_SIZE_BYTES);
    await (await reader()).readPages(240, 40, across);
    expect(across.equals(memory.bytes.subarray(240 * PAGE_SIZE_BYTES, 280 * PAGE_SIZE_BYTES))).toBe(true);
  });

  it('reads pages of chunks that were never uploaded as zeros', async () => {
    const memory = GuestMemory.create(1024);
    memory.writePage(5, 1, 1);
    const file = await writer(memory);
    file.writePages(batchOf(memory, [5]).entries, Buffer.alloc(0));
    await file.sync();

    const target = Buffer.alloc(768 * PAGE_SIZE_BYTES, 0xff);
    await (await reader()).readPages(256, 768, target);

    expect(target.equals(Buffer.alloc(768 * PAGE_SIZE_BYTES))).toBe(true);
  });

  it('round-trips round and final manifests, and reopens with what they say is held', async () => {
    const memory = GuestMemory.create(PAGE_COUNT);
    const file = await writer(memory);
    expect(await file.readFinalManifest()).toBeUndefined();
    expect(await file.readNewestRoundManifest()).toBeUndefined();
    expect(await file.waitForComplete(30, 5)).toBe(false);

    await file.writeManifest(roundManifest(0, [1, 2], [5, 6]));
    await file.writeManifest(roundManifest(1, [1, 2, 9], [7, 6, 3]));
    await file.writeManifest({
      ...roundManifest(2, [1, 599], [8, 4]),
      final: true,
      finalSeq: 42,
      digest: 'cd'.repeat(32),
    });
    await file.markComplete();

    const other = await reader();
    expect(await other.waitForComplete(1_000, 5)).toBe(true);
    const final = await other.readFinalManifest();
    expect(final).toMatchObject({ round: 2, final: true, finalSeq: 42, digest: 'cd'.repeat(32) });
    expect(Array.from(final?.indexes ?? [])).toEqual([1, 599]);
    const newest = await other.readNewestRoundManifest();
    expect(newest?.manifest.round).toBe(1);
    expect(Array.from(newest?.manifest.versions ?? [])).toEqual([7, 6, 3]);
    expect(await other.readNewestRoundManifest(newest?.stamp)).toBeUndefined();
    const reopened = await writer(memory);
    expect([1, 2, 9, 599].map((index) => reopened.syncedVersions[index])).toEqual([8, 6, 3, 4]);
  });

  it('gives the newest round manifest a new stamp when it is replaced or a later round is written', async () => {
    const file = await writer(GuestMemory.create(PAGE_COUNT));
    await file.writeManifest(roundManifest(3, [1], [1]));
    const first = await file.readNewestRoundManifest();

    await file.writeManifest(roundManifest(3, [1, 2], [1, 1]));
    const replaced = await file.readNewestRoundManifest(first?.stamp);
    await file.writeManifest(roundManifest(10, [4], [2]));
    const later = await file.readNewestRoundManifest(replaced?.stamp);

    expect(Array.from(replaced?.manifest.indexes ?? [])).toEqual([1, 2]);
    expect(replaced?.stamp).not.toBe(first?.stamp);
    expect(later?.manifest.round).toBe(10);
  });

  it('names the migration and the key when a manifest fails its checksum', async () => {
    const file = await writer(GuestMemory.create(PAGE_COUNT));
    const damaged = encodeManifest({ ...roundManifest(4, [1, 2], [3, 4]), final: true });
    damaged[FINAL_MANIFEST_DAMAGE_AT] = (damaged[FINAL_MANIFEST_DAMAGE_AT] as number) ^ 1;
    await objects.put('migrations/m1/manifests/final', damaged);

    const error = await file.readFinalManifest().catch((e: unknown) => e);

    expect((error as Error).message).toContain('manifest checksum mismatch');
    expect(error).toMatchObject({ name: 'PageStoreError', migrationId: 'm1' });
    expect((error as Error).message).toContain('migrations/m1/manifests/final');
  });

  it('lets exactly one of two concurrent claims of an epoch win, and a recommit by the winner win again', async () => {
    const claims = ['host-a', 'host-b'].map(async (hostId) =>
      store.commitClaim(await store.prepareClaim({ vmId: 'vm1', epoch: 2, hostId, migrationId: `m-${hostId}` })),
    );
    const results = await Promise.all(claims);
    const winner = results.find((r) => r.won)?.record;

    expect(results.filter((r) => r.won)).toHaveLength(1);
    expect(results.map((r) => r.record.hostId)).toEqual([winner?.hostId, winner?.hostId]);
    const again = await store.commitClaim(await store.prepareClaim({ ...(winner as NonNullable<typeof winner>) }));
    expect(again.won).toBe(true);
    await store.commitClaim(await store.prepareClaim({ vmId: 'vm1', epoch: 1, hostId: 'host-c', migrationId: 'm0' }));
    expect(await store.readOwner('vm1')).toMatchObject({ epoch: 2, hostId: winner?.hostId });
    expect(await store.releaseOwnership('vm1', 'host-c')).toBe(false);
    expect(await store.releaseOwnership('vm1', winner?.hostId ?? '')).toBe(true);
    expect(await store.readOwner('vm1')).toBeUndefined();
  });

  it('removes every object of a migration, after which no message can be posted into it', async () => {
    const memory = GuestMemory.create(PAGE_COUNT);
    memory.writePage(300, 1, 1);
    const file = await writer(memory);
    file.writePages(batchOf(memory, [300]).entries, Buffer.alloc(0));
    await file.sync();
    await file.writeManifest(roundManifest(0, [300], [1]));
    await store.postMessage('m1', 'final', { seq: 7 });
    expect(await store.readMessage('m1', 'final')).toEqual({ seq: 7 });

    await store.removeMigration('m1');
    await store.removeMigration('m1');

    expect(await objects.list('migrations/m1/')).toEqual([]);
    const error = await store.postMessage('m1', 'late', { seq: 8 }).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'PageStoreError', migrationId: 'm1' });
    expect((error as Error).message).toContain("cannot post late: the migration's files are gone");
    expect(await objects.list('migrations/m1/')).toEqual([]);
    await expect(reader()).rejects.toMatchObject({
      name: 'PageStoreError',
      message: expect.stringContaining('header'),
    });
  });

  it('says why the store is not writable, naming it', async () => {
    await expect(store.assertWritable()).resolves.toBeUndefined();
    expect(await objects.list('probes/')).toEqual([]);
    const missing = new ObjectPageStore(new DirectoryObjectStore(path.join(dir, 'nowhere')), 'nowhere');

    const error = await missing.assertWritable().catch((e: unknown) => e);

    expect(error).toMatchObject({ name: 'StoreUnavailableError' });
    expect((error as Error).message).toContain('does not exist');
    expect((error as Error).message).toContain(path.join(dir, 'nowhere'));
  });
});
