import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isTransientStoreFailure } from '../../store/object/chunk-upload-health';
import { COPY_ATTEMPTS } from '../../store/object/chunk-uploader';
import { DirectoryObjectStore } from '../../store/object/directory-object-store';
import type { ObjectPageFile } from '../../store/object/object-page-file';
import { ObjectPageStore } from '../../store/object/object-page-store';
import {
  BucketNotFoundError,
  ObjectStoreError,
  StoreAccessDeniedError,
  StoreUnreachableError,
} from '../../store/object/object-store-errors';
import type { PageSource } from '../../store/page-store';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { TestObjectStore, batchOf, memorySource } from './support/test-object-store';

const CHUNK0 = 'migrations/m1/chunks/00000000';
const unreachable = (): Error =>
  new StoreUnreachableError({ endpoint: 'http://127.0.0.1:1', bucket: 'b', key: CHUNK0 }, 5, 20_000, 'ECONNREFUSED');
const denied = (): Error =>
  new StoreAccessDeniedError(
    { endpoint: 'http://127.0.0.1:1', bucket: 'b', accessKeyId: 'AK', key: CHUNK0 },
    'AccessDenied',
  );

/** A page source that hands out page `index` damaged for its first `times` copies, as a vCPU write during the copy would. */
function tearingSource(memory: GuestMemory, index: number, times: number): PageSource {
  let torn = 0;
  return {
    pageCount: memory.pageCount,
    copyPage(i, target) {
      memory.page(i).copy(target);
      if (i === index && torn < times) {
        torn += 1;
        target[100] = (target[100] as number) ^ 0xff;
      }
    },
  };
}

describe('the uploads of an object page file', () => {
  let dir: string;
  let objects: TestObjectStore;
  const open: ObjectPageFile[] = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-object-uploads-'));
    objects = new TestObjectStore(new DirectoryObjectStore(dir));
  });

  afterEach(async () => {
    objects.hold(false);
    await Promise.all(open.splice(0).map((file) => file.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function writer(memory: GuestMemory, source: PageSource = memorySource(memory)): Promise<ObjectPageFile> {
    const store = new ObjectPageStore(objects, dir);
    const file = await store.createPageFile({ migrationId: 'm1', vmId: 'vm1', pageCount: memory.pageCount }, source);
    open.push(file);
    return file;
  }

  async function storedPage(index: number): Promise<Buffer> {
    const target = Buffer.alloc(PAGE_SIZE_BYTES);
    await (await new ObjectPageStore(objects, dir).openPageFile('m1')).readPages(index, 1, target);
    return target;
  }

  it('makes a sync wait for pages marked before it, uploaded by an upload that started after their mark', async () => {
    const memory = GuestMemory.create(512);
    memory.writePage(1, 1, 3);
    const file = await writer(memory);
    objects.hold();
    file.writePages(batchOf(memory, [1]).entries, Buffer.alloc(0));
    const first = await objects.nextHeld();
    memory.writePage(1, 2, 3);
    file.writePages(batchOf(memory, [1]).entries, Buffer.alloc(0));
    expect(file.pendingBytes).toBe(2 * PAGE_SIZE_BYTES);
    expect(file.bufferedBytes).toBe(256 * PAGE_SIZE_BYTES);
    let synced = false;
    const sync = file.sync().then((versions) => ((synced = true), versions[1]));

    void first.release();
    const second = await objects.nextHeld();
    expect(file.syncedVersions[1]).toBe(1);
    expect(synced).toBe(false);
    void second.release();

    expect(await sync).toBe(2);
    expect((await storedPage(1)).equals(memory.page(1))).toBe(true);
    expect(file.pendingBytes).toBe(0);
  });

  it('copies a page torn by a guest write again, and uploads it within the same chunk image', async () => {
    const memory = GuestMemory.create(256);
    memory.writePage(9, 4, 1);
    const file = await writer(memory, tearingSource(memory, 9, 1));

    file.writePages(batchOf(memory, [9]).entries, Buffer.alloc(0));

    expect((await file.sync())[9]).toBe(4);
    expect(objects.puts.filter((key) => key === CHUNK0)).toHaveLength(1);
  });

  it('uploads a chunk again for a page that stayed torn through every copy, and a sync waits for it', async () => {
    const memory = GuestMemory.create(256);
    memory.writePage(9, 4, 1);
    memory.writePage(10, 6, 1);
    const file = await writer(memory, tearingSource(memory, 9, COPY_ATTEMPTS));

    file.writePages(batchOf(memory, [9, 10]).entries, Buffer.alloc(0));
    const versions = await file.sync();

    expect([versions[9], versions[10]]).toEqual([4, 6]);
    expect(objects.puts.filter((key) => key === CHUNK0)).toHaveLength(2);
    expect((await storedPage(9)).equals(memory.page(9))).toBe(true);
  });

  it('takes the version a source that keeps versions apart from its pages gives with each copy (a real guest), and copies again one it calls torn', async () => {
    // Raw guest pages, no header: the simulated self-check would call every one torn.
    const raw = new Map([
      [3, Buffer.alloc(PAGE_SIZE_BYTES, 0xa5)],
      [4, Buffer.alloc(PAGE_SIZE_BYTES, 0x5a)],
    ]);
    const versions = new Map([
      [3, 7],
      [4, 2],
    ]);
    let tornCopiesOf4 = 1;
    const source: PageSource = {
      pageCount: 256,
      copyPage: () => {
        throw new Error('a source that keeps versions apart is asked for versioned copies only');
      },
      copyVersionedPage: (index, target) => {
        (raw.get(index) ?? Buffer.alloc(PAGE_SIZE_BYTES)).copy(target);
        if (index === 4 && tornCopiesOf4 > 0) {
          tornCopiesOf4 -= 1;
          return -1;
        }
        return versions.get(index) ?? 0;
      },
    };
    const file = await writer(GuestMemory.create(256), source);

    file.writePages(
      [
        { index: 3, version: 7 },
        { index: 4, version: 2 },
      ],
      Buffer.alloc(0),
    );
    const synced = await file.sync();

    expect([synced[3], synced[4], synced[5]]).toEqual([7, 2, 0]);
    expect(objects.puts.filter((key) => key === CHUNK0)).toHaveLength(1);
    expect((await storedPage(3)).equals(raw.get(3) as Buffer)).toBe(true);
    expect((await storedPage(4)).equals(raw.get(4) as Buffer)).toBe(true);
  });

  it('uploads up to eight chunks at once, never two uploads of one chunk, and keeps the newest content', async () => {
    const memory = GuestMemory.create(40 * 256);
    const file = await writer(memory);
    for (let generation = 1; generation <= 5; generation += 1) {
      const indexes = Array.from({ length: 40 }, (_, chunk) => chunk * 256 + generation);
      for (const index of [...indexes, 7]) memory.writePage(index, generation, 2);
      file.writePages(batchOf(memory, [...indexes, 7]).entries, Buffer.alloc(0));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const versions = await file.sync();

    expect(objects.maxInFlight).toBe(8);
    expect(objects.overlapsOfOneKey).toBe(0);
    expect(versions[7]).toBe(5);
    expect(versions[39 * 256 + 5]).toBe(5);
    expect((await storedPage(7)).equals(memory.page(7))).toBe(true);
  });

  it('retries through a transient outage, records it, and syncs once the store is back', async () => {
    const memory = GuestMemory.create(300);
    for (const index of [0, 299]) memory.writePage(index, 3, 5);
    const file = await writer(memory);
    objects.failNextPuts(4, unreachable);

    file.writePages(batchOf(memory, [0, 299]).entries, Buffer.alloc(0));
    const versions = await file.sync();

    expect([versions[0], versions[299]]).toEqual([3, 3]);
    const { outages, failure } = file.storeHealth();
    expect(failure).toBeUndefined();
    expect(outages).toHaveLength(1);
    expect(outages[0]).toMatchObject({ failedUploads: 4, reason: expect.stringContaining('S3 endpoint unreachable') });
    expect(outages[0]?.to).toBeGreaterThanOrEqual(outages[0]?.from ?? Infinity);
    expect((await storedPage(299)).equals(memory.page(299))).toBe(true);
  });

  it('fails every later sync with a PageStoreError naming the migration and the key after a permanent failure', async () => {
    const memory = GuestMemory.create(256);
    memory.writePage(2, 1, 5);
    const file = await writer(memory);
    objects.failNextPuts(1, denied);

    file.writePages(batchOf(memory, [2]).entries, Buffer.alloc(0));
    const error = await file.sync().catch((e: unknown) => e);

    expect(error).toMatchObject({
      name: 'PageStoreError',
      migrationId: 'm1',
      cause: { name: 'StoreAccessDeniedError' },
    });
    expect((error as Error).message).toContain(CHUNK0);
    expect((error as Error).message).toContain('S3 access denied');
    await expect(file.sync()).rejects.toMatchObject({ name: 'PageStoreError' });
    await expect(file.waitForWrites(0)).resolves.toBeUndefined();
    expect(file.storeHealth().failure).toMatchObject({ key: CHUNK0 });
  });

  it('closes after the upload in flight, leaving pages only marked unuploaded and failing a sync that waits for them', async () => {
    const memory = GuestMemory.create(512);
    memory.writePage(1, 1, 5);
    const file = await writer(memory);
    objects.hold();
    file.writePages(batchOf(memory, [1]).entries, Buffer.alloc(0));
    const inFlight = await objects.nextHeld();
    memory.writePage(2, 1, 5);
    file.writePages(batchOf(memory, [2]).entries, Buffer.alloc(0));
    const sync = file.sync().catch((e: unknown) => e);

    const closed = file.close();
    await inFlight.release();
    await closed;

    expect(await sync).toMatchObject({ name: 'PageStoreError', migrationId: 'm1' });
    expect(objects.puts.filter((key) => key === CHUNK0)).toHaveLength(1);
    expect(file.syncedVersions[1]).toBe(1);
    expect(file.syncedVersions[2]).toBe(0);
  });

  it('retries an unreachable endpoint, a server error or a filesystem hiccup, and nothing else', () => {
    const failed = (cause: unknown): Error => new ObjectStoreError('put', { store: 's', key: CHUNK0 }, 'x', { cause });

    expect(isTransientStoreFailure(unreachable())).toBe(true);
    expect(isTransientStoreFailure(failed({ $metadata: { httpStatusCode: 503 } }))).toBe(true);
    expect(isTransientStoreFailure(failed(Object.assign(new Error('io'), { code: 'EIO' })))).toBe(true);
    expect(isTransientStoreFailure(failed({ $metadata: { httpStatusCode: 400 } }))).toBe(false);
    expect(isTransientStoreFailure(failed(Object.assign(new Error('full'), { code: 'ENOSPC' })))).toBe(false);
    expect(isTransientStoreFailure(denied())).toBe(false);
    expect(isTransientStoreFailure(new BucketNotFoundError('b', 'http://127.0.0.1:1', CHUNK0))).toBe(false);
  });

  it('lets a writer wait until the pages it marked are uploaded', async () => {
    const memory = GuestMemory.create(512);
    for (const index of [1, 300]) memory.writePage(index, 1, 5);
    const file = await writer(memory);
    objects.hold();
    file.writePages(batchOf(memory, [1, 300]).entries, Buffer.alloc(0));
    let drained = false;
    const wait = file.waitForWrites(0).then(() => (drained = true));

    await (await objects.nextHeld()).release();
    expect(file.pendingBytes).toBe(PAGE_SIZE_BYTES);
    expect(drained).toBe(false);
    await (await objects.nextHeld()).release();

    await wait;
    expect(file.pendingBytes).toBe(0);
  });
});
