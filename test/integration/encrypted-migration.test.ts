/**
 * `policy.encrypt`: a migration whose pages travel AES-256-GCM-encrypted on the real nats-server
 * and rest sealed in the page file completes with the destination's memory equal to the source's
 * page by page, and no page of the guest crosses NATS or lands in the store in clear. An observer
 * holding the test cluster's NATS admin user records every page batch; the source's memory, dumped
 * after the switchover, is then looked for in them and in the page file, kept for the purpose.
 */
import { createHash } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { BATCH_FLAG_ENCRYPTED } from '../../data-plane/batch-format';
import { PAGE_CIPHER_SALT_BYTES, PAGE_TAG_BYTES } from '../../data-plane/page-cipher';
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { openPageStore } from '../../store/open-store';
import { expectSameMemory, useCluster } from './support/cluster-fixture';
import { guestMemoryOn, pagesInClear, storedMigrationBytes } from './support/stored-pages';

jest.setTimeout(180_000);

const fx = useCluster();
let observer: NatsConnection;

beforeAll(async () => {
  const { admin } = fx.cluster.nats;
  if (admin === undefined) throw new Error('the test cluster has no NATS admin');
  observer = await connect({
    servers: fx.cluster.nats.url,
    name: 'observer',
    reconnect: false,
    user: admin.user,
    pass: admin.password,
  });
});

afterAll(async () => {
  await observer?.close();
});

const sha = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/** The flags of a batch frame and the hashes of the 4 KiB pages it carries (layout: batch-format.ts). */
function framePages(frame: Uint8Array): { flags: number; pageHashes: string[] } {
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const flags = b.readUInt16LE(6);
  const entryCount = b.readUInt32LE(16);
  const idLength = b.readUInt16LE(20);
  const saltAndTag = (flags & BATCH_FLAG_ENCRYPTED) !== 0 ? PAGE_CIPHER_SALT_BYTES + PAGE_TAG_BYTES : 0;
  const dataStart = 24 + ((idLength + 3) & ~3) + saltAndTag + entryCount * 24;
  const pageHashes: string[] = [];
  for (let at = dataStart; at + PAGE_SIZE_BYTES <= b.length - 16; at += PAGE_SIZE_BYTES)
    pageHashes.push(sha(b.subarray(at, at + PAGE_SIZE_BYTES)));
  return { flags, pageHashes };
}

it('migrates with encrypted pages on NATS and in the store, memory equal page by page, no guest page seen in clear', async () => {
  const vmId = 'vm-encrypted';
  const frames: { flags: number; pageHashes: string[] }[] = [];
  const sub = observer.subscribe(`*.h1.h2.>`, {
    callback: (err, msg) => {
      if (!err && msg.subject.endsWith('.pages')) frames.push(framePages(msg.data));
    },
  });
  await observer.flush();
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 32 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 2 * 2 ** 20 },
    seed: 11,
  });
  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true, keepPageFile: true, encrypt: true },
  });

  const result = await fx.ferry.result(workflowId);
  sub.unsubscribe();
  expect(result.outcome).toBe('completed');
  expect(result.runningOn).toBe('h2');
  expect(result.verified).toBe(true);
  expect(result.destinationDigest).toBe(result.sourceDigest);

  const memory = await guestMemoryOn(fx, 'h1', vmId);
  await expectSameMemory(fx, vmId);

  // Most of the guest is never written after round 0: sent in clear, its pages would be found here.
  const seen = new Set(frames.flatMap((f) => f.pageHashes));
  const guestPages = memory.length / PAGE_SIZE_BYTES;
  let inClear = 0;
  for (let i = 0; i < guestPages; i += 1)
    if (seen.has(sha(memory.subarray(i * PAGE_SIZE_BYTES, (i + 1) * PAGE_SIZE_BYTES)))) inClear += 1;
  expect(frames.length).toBeGreaterThan(0);
  expect(seen.size).toBeGreaterThanOrEqual(guestPages / 2);
  expect(inClear).toBe(0);
  expect(frames.filter((f) => (f.flags & BATCH_FLAG_ENCRYPTED) === 0).length).toBe(0);

  // The page file holds every page sent (the guest's whole memory at least once), sealed.
  const stored = await storedMigrationBytes(fx.cluster, result.migrationId);
  const inStore = pagesInClear(memory, stored);
  expect(stored.length).toBeGreaterThan(memory.length);
  expect(inStore.nonZero).toBeGreaterThanOrEqual(guestPages / 2);
  expect(inStore.inClear).toBe(0);
  await openPageStore(fx.cluster.env.store, fx.cluster.processEnv).removeMigration(result.migrationId);
});
