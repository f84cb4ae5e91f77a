import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import type { TestSeaweed } from '../../harness';
import { startTestSeaweed } from '../../harness';
import type { Manifest } from '../../store/manifest-format';
import type { ObjectPageFile } from '../../store/object/object-page-file';
import { ObjectPageStore } from '../../store/object/object-page-store';
import { S3ObjectStore } from '../../store/object/s3-object-store';
import type { PageFile } from '../../store/page-store';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';

jest.setTimeout(180_000);

const BUCKET = 'ferry-pages';
const PAGE_COUNT = 16_384; // 64 MiB
const BATCH_PAGES = 64;
const READ_RUN_PAGES = 256;
let seaweed: TestSeaweed;
const stores: ObjectPageStore[] = [];
const files: PageFile[] = [];

function openStore(bucket = BUCKET): ObjectPageStore {
  const { endpoint, region, accessKeyId, secretAccessKey } = seaweed;
  const credentials = { accessKeyId, secretAccessKey };
  const objects = new S3ObjectStore({ endpoint, region, bucket, credentials, prefix: 'ferry' });
  const store = new ObjectPageStore(objects, `s3://${bucket}/ferry`);
  stores.push(store);
  return store;
}

/** Guest memory with most pages written at a random generation and about one in ten left zero. */
function randomMemory(): GuestMemory {
  const memory = GuestMemory.create(PAGE_COUNT);
  const seed = Math.floor(Math.random() * 2 ** 31);
  for (let index = 0; index < PAGE_COUNT; index += 1) {
    if (Math.random() >= 0.1) memory.writePage(index, 1 + Math.floor(Math.random() * 1000), seed);
  }
  return memory;
}

/** Pages of `memory` that `file` does not hold byte for byte, read in runs of READ_RUN_PAGES, four runs at a time. */
async function pagesDiffering(file: PageFile, memory: GuestMemory): Promise<number[]> {
  const differing: number[] = [];
  const readRun = async (first: number): Promise<void> => {
    const count = Math.min(READ_RUN_PAGES, PAGE_COUNT - first);
    const target = Buffer.alloc(count * PAGE_SIZE_BYTES);
    await file.readPages(first, count, target);
    for (let k = 0; k < count; k += 1) {
      const page = target.subarray(k * PAGE_SIZE_BYTES, (k + 1) * PAGE_SIZE_BYTES);
      if (!page.equals(memory.page(first + k))) differing.push(first + k);
    }
  };
  // Runs start off the chunk grid, so each one is two ranged GETs of two chunks.
  const starts = [0, ...Array.from({ length: PAGE_COUNT / READ_RUN_PAGES }, (_, r) => r * READ_RUN_PAGES + 100)];
  for (let next = 0; next < starts.length; next += 4)
    await Promise.all(
      starts
        .slice(next, next + 4)
        .filter((s) => s < PAGE_COUNT)
        .map(readRun),
    );
  return differing;
}

function manifestOf(round: number, versions: Uint32Array, final: boolean): Manifest {
  const indexes = Uint32Array.from(versions.keys()).filter((index) => versions[index] !== 0);
  const digest = final ? 'ef'.repeat(32) : '';
  return {
    round,
    final,
    indexes,
    versions: indexes.map((i) => versions[i] as number),
    finalSeq: final ? 9 : 0,
    digest,
  };
}

beforeAll(async () => {
  seaweed = await startTestSeaweed();
  const { endpoint, region, accessKeyId, secretAccessKey } = seaweed;
  const admin = new S3Client({ endpoint, region, credentials: { accessKeyId, secretAccessKey }, forcePathStyle: true });
  await admin.send(new CreateBucketCommand({ Bucket: BUCKET }));
  admin.destroy();
});

afterAll(async () => {
  await Promise.all(files.splice(0).map((file) => file.close()));
  stores.forEach((store) => store.close());
  await seaweed?.stop();
});

describe('the object page store on S3 (SeaweedFS)', () => {
  it('uploads 64 MiB of guest memory and a second store reads every page back byte for byte', async () => {
    const memory = randomMemory();
    const writer = (await openStore().createPageFile(
      { migrationId: 'm-64', vmId: 'vm-64', pageCount: PAGE_COUNT },
      { pageCount: PAGE_COUNT, copyPage: (index, target) => memory.page(index).copy(target) },
    )) as ObjectPageFile;
    files.push(writer);

    const startedAt = performance.now();
    for (let first = 0; first < PAGE_COUNT; first += BATCH_PAGES) {
      const entries = Array.from({ length: BATCH_PAGES }, (_, k) => ({ index: first + k, version: 0 }));
      writer.writePages(entries, Buffer.alloc(0));
    }
    expect(writer.bufferedBytes).toBeLessThanOrEqual(8 * 1024 * 1024);
    const synced = await writer.sync();
    const seconds = (performance.now() - startedAt) / 1000;
    console.log(
      `S3 page store: 64 MiB uploaded and synced in ${seconds.toFixed(2)} s, ` +
        `${((PAGE_COUNT * PAGE_SIZE_BYTES) / seconds / 1e6).toFixed(0)} MB/s (1 MiB chunks, 8 in parallel)`,
    );

    expect(Array.from(synced)).toEqual(Array.from({ length: PAGE_COUNT }, (_, i) => memory.meta[i * 2]));
    expect(writer.storeHealth()).toEqual({ outages: [] });
    const reader = await openStore().openPageFile('m-64');
    files.push(reader);
    const readStartedAt = performance.now();
    expect(await pagesDiffering(reader, memory)).toEqual([]);
    const readSeconds = (performance.now() - readStartedAt) / 1000;
    console.log(`S3 page store: 64 MiB read back with ranged GETs in ${readSeconds.toFixed(2)} s`);

    await writer.writeManifest(manifestOf(0, synced, false));
    await writer.writeManifest(manifestOf(1, synced, true));
    expect(await reader.waitForComplete(100, 20)).toBe(false);
    await writer.markComplete();
    expect(await reader.waitForComplete(5_000, 20)).toBe(true);
    const final = await reader.readFinalManifest();
    expect(final).toMatchObject({ round: 1, final: true, finalSeq: 9, digest: 'ef'.repeat(32) });
    expect(Array.from(final?.versions ?? [])).toEqual(Array.from(manifestOf(1, synced, true).versions));
    const newest = await reader.readNewestRoundManifest();
    expect(newest?.manifest.indexes.length).toBe(manifestOf(0, synced, false).indexes.length);
    expect(await reader.readNewestRoundManifest(newest?.stamp)).toBeUndefined();
    const reopened = await openStore().openPageFile('m-64');
    files.push(reopened);
    expect(Array.from(reopened.syncedVersions)).toEqual(Array.from(synced));
  });

  it('removes a migration whole and then refuses to post into it', async () => {
    const store = openStore();
    const memory = GuestMemory.create(600);
    memory.writePage(599, 3, 1);
    const file = await store.createPageFile(
      { migrationId: 'm-rm', vmId: 'vm-rm', pageCount: 600 },
      {
        pageCount: 600,
        copyPage: (index, target) => memory.page(index).copy(target),
      },
    );
    files.push(file);
    file.writePages([{ index: 599, version: 3 }], Buffer.alloc(0));
    await file.sync();
    await store.postMessage('m-rm', 'final', { ok: true });
    expect(await store.readMessage('m-rm', 'final')).toEqual({ ok: true });

    await store.removeMigration('m-rm');

    await expect(store.openPageFile('m-rm')).rejects.toMatchObject({ name: 'PageStoreError' });
    await expect(store.postMessage('m-rm', 'late', {})).rejects.toThrow("the migration's files are gone");
    expect(await store.readMessage('m-rm', 'final')).toBeUndefined();
  });

  it('lets exactly one of two hosts claim an epoch with real conditional writes', async () => {
    const [a, b] = [openStore(), openStore()];
    const claim = async (store: ObjectPageStore, hostId: string) =>
      store.commitClaim(await store.prepareClaim({ vmId: 'vm-cas', epoch: 1, hostId, migrationId: `m-${hostId}` }));

    const results = await Promise.all([claim(a, 'host-a'), claim(b, 'host-b')]);

    expect(results.filter((r) => r.won)).toHaveLength(1);
    const winner = results.find((r) => r.won)?.record;
    expect(results.map((r) => r.record.hostId)).toEqual([winner?.hostId, winner?.hostId]);
    expect(await b.readOwner('vm-cas')).toMatchObject({ epoch: 1, hostId: winner?.hostId });
    expect(await a.releaseOwnership('vm-cas', winner?.hostId ?? '')).toBe(true);
    expect(await a.readOwner('vm-cas')).toBeUndefined();
  });

  it('checks that the bucket can be written, and names a missing bucket', async () => {
    await expect(openStore().assertWritable()).resolves.toBeUndefined();

    const error = await openStore('ferry-no-such-bucket')
      .assertWritable()
      .catch((e: unknown) => e);

    expect(error).toMatchObject({ name: 'StoreUnavailableError' });
    expect((error as Error).message).toContain('bucket ferry-no-such-bucket does not exist');
  });
});
