/**
 * `policy.encrypt`: a migration whose pages travel AES-256-GCM-encrypted on the real nats-server
 * completes with the destination's memory equal to the source's page by page, and no page of the
 * guest crosses NATS in clear. An observer holding the test cluster's NATS admin user records every
 * page batch; the source's memory, dumped after the switchover, is then looked for in them.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { BATCH_FLAG_ENCRYPTED } from '../../data-plane/batch-format';
import { PAGE_CIPHER_SALT_BYTES, PAGE_TAG_BYTES } from '../../data-plane/page-cipher';
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { expectSameMemory, useCluster } from './support/cluster-fixture';

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

it('migrates with encrypted pages on NATS, memory equal page by page, and no guest page seen there in clear', async () => {
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
    policy: { keepSourceAfterSwitchover: true, encrypt: true },
  });

  const result = await fx.ferry.result(workflowId);
  sub.unsubscribe();
  expect(result.outcome).toBe('completed');
  expect(result.runningOn).toBe('h2');
  expect(result.verified).toBe(true);
  expect(result.destinationDigest).toBe(result.sourceDigest);

  const dump = path.join(fx.cluster.env.stateDir, 'dumps', `${vmId}-source.bin`);
  await fs.mkdir(path.dirname(dump), { recursive: true });
  await fx.ferry.dumpVmMemory('h1', vmId, dump);
  const memory = await fs.readFile(dump);
  await fs.rm(dump);
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
});
