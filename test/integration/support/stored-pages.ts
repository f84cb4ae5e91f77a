/**
 * What the shared store of a test cluster holds for one migration, read past ferry's own readers:
 * the bytes of the page file (directory store) or of every object under the migration's folder (S3
 * store), to look for guest pages in them.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { parseStoreRef } from '../../../store/open-store';
import { migrationDir } from '../../../store/directory/page-file';
import { S3ObjectStore } from '../../../store/object/s3-object-store';
import { s3Environment } from '../../../temporal-config/environment';
import { PAGE_SIZE_BYTES } from '../../../vmm/guest-memory';
import type { TestCluster } from '../../../harness/test-cluster';
import type { ClusterFixture } from './cluster-fixture';

/** The memory of `vmId` on `hostId` as it is now, dumped by its VMM and read back (the dump is removed). */
export async function guestMemoryOn(fx: ClusterFixture, hostId: string, vmId: string): Promise<Buffer> {
  const dump = path.join(fx.cluster.env.stateDir, 'dumps', `${vmId}-${hostId}-now.bin`);
  await fs.mkdir(path.dirname(dump), { recursive: true });
  try {
    await fx.ferry.dumpVmMemory(hostId, vmId, dump);
    return await fs.readFile(dump);
  } finally {
    await fs.rm(dump, { force: true });
  }
}

/** Every byte the store holds for migration `migrationId`, files or objects one after another. */
export async function storedMigrationBytes(cluster: TestCluster, migrationId: string): Promise<Buffer> {
  const ref = parseStoreRef(cluster.env.store);
  if (ref.kind === 'directory') return fs.readFile(path.join(migrationDir(ref.dir, migrationId), 'pages.ferry'));
  const s3 = s3Environment(cluster.processEnv);
  const bucket = new S3ObjectStore({
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    bucket: ref.bucket,
    ...(ref.prefix === '' ? {} : { prefix: ref.prefix }),
  });
  try {
    const keys = await bucket.list(`migrations/${migrationId}/`);
    const bodies = await Promise.all(keys.map(async (key) => (await bucket.get(key))?.body ?? Buffer.alloc(0)));
    return Buffer.concat(bodies);
  } finally {
    bucket.close();
  }
}

const sha = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/**
 * How many non-zero pages of `memory` appear whole in `stored` at a 4 KiB boundary of their own
 * layout: a page file or chunk in clear holds page i at a multiple of 4 KiB (after a 4 KiB header),
 * so a clear store shows nearly every page of a guest that was not rewritten since.
 */
export function pagesInClear(memory: Buffer, stored: Buffer): { inClear: number; nonZero: number } {
  const held = new Set<string>();
  for (let at = 0; at + PAGE_SIZE_BYTES <= stored.length; at += PAGE_SIZE_BYTES)
    held.add(sha(stored.subarray(at, at + PAGE_SIZE_BYTES)));
  const zero = Buffer.alloc(PAGE_SIZE_BYTES);
  let inClear = 0;
  let nonZero = 0;
  for (let at = 0; at < memory.length; at += PAGE_SIZE_BYTES) {
    const page = memory.subarray(at, at + PAGE_SIZE_BYTES);
    if (page.equals(zero)) continue;
    nonZero += 1;
    if (held.has(sha(page))) inClear += 1;
  }
  return { inClear, nonZero };
}
