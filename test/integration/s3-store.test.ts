/**
 * Migrations on the S3 store (a SeaweedFS server of this file's cluster): what lands in the bucket,
 * the S3 server crashing mid pre-copy and coming back, or not, and a store named wrongly, refused by
 * the CLI before anything starts and by the workflow when the CLI is bypassed. Each completed
 * migration ends with the destination's memory checked page by page; each failed one with the
 * source running on h1, its memory checking itself.
 */
import * as path from 'node:path';
import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { EXIT } from '../../cli/errors';
import { migrationWorkflowId } from '../../cli/ferry-client';
import { pickFreePort } from '../../infra/ports';
import { closePageStores, openPageStore, parseStoreRef } from '../../store/open-store';
import { S3ObjectStore } from '../../store/object/s3-object-store';
import { compareWithPageFile } from '../../verification';
import type { MigrationResult } from '../../workflows/types';
import {
  endedResult,
  expectSameMemory,
  migrateNewGuest,
  runningCopies,
  useCluster,
  vmmCall,
} from './support/cluster-fixture';
import { runFerryCli } from './support/run-cli';
import { guestMemoryOn, pagesInClear, storedMigrationBytes } from './support/stored-pages';

jest.setTimeout(180_000);

const fx = useCluster({ store: 's3' });

function seaweed(): NonNullable<typeof fx.cluster.seaweed> {
  const server = fx.cluster.seaweed;
  if (!server) throw new Error('the cluster was started without its S3 server');
  return server;
}

/** Runs `ferry` with `env`; `line` is its one line of error (stderr also holds Node's warnings). */
async function ferryCli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; line: string }> {
  const { code, stderr } = await runFerryCli(env, args);
  return { code, line: stderr.split('\n').find((l) => l.startsWith('ferry: ')) ?? stderr };
}

/** Asserts that `vmId` is listed running on h1 alone and that each of its pages checks itself. */
async function expectRunningOnSource(vmId: string): Promise<void> {
  const listings = await fx.ferry.listVms(['h1', 'h2']);
  const onHost = (hostId: string) => listings.find((l) => l.hostId === hostId)?.vms.find((vm) => vm.vmId === vmId);
  expect(onHost('h1')).toMatchObject({ mode: 'run', state: 'running' });
  expect(onHost('h2')).toBeUndefined();
  expect(await runningCopies(fx, vmId)).toEqual(['h1']);
  const verify = await vmmCall<{ badPages: number; checked: number }>(fx.cluster, 'h1', vmId, 'verify');
  expect(verify.badPages).toBe(0);
  expect(verify.checked).toBe(onHost('h1')?.pageCount);
}

/**
 * The migration's result once it ends. After `ms` it is terminated, so that nothing waits on it
 * past the test, and the test fails saying where it hung and whether the source is stunned.
 */
async function endedWithin(workflowId: string, ms: number): Promise<MigrationResult> {
  const ended = endedResult(fx, workflowId);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  const result = await Promise.race([ended, late]).finally(() => clearTimeout(timer));
  if (result) return result;
  const handle = fx.cluster.client.workflow.getHandle(workflowId);
  const [progress, description, source] = await Promise.all([
    fx.ferry.progress(workflowId),
    handle.describe(),
    vmmCall<{ vcpu: { state: string } }>(fx.cluster, 'h1', workflowId.replace(/^migrate-/, ''), 'status'),
  ]);
  const pending = (description.raw.pendingActivities ?? []).map(
    (a) => `${a.activityType?.name} attempt ${a.attempt} (last failure: ${a.lastFailure?.message ?? 'none'})`,
  );
  await handle.terminate(`the test gave up on it after ${ms} ms`);
  await ended.catch(() => undefined);
  throw new Error(
    `migration ${workflowId} did not end within ${ms / 1000} s: phase ${progress.phase}, source vCPU ` +
      `${source.vcpu.state}, pending ${pending.join('; ') || 'none'}, incidents ${JSON.stringify(progress.incidents)}`,
  );
}

test('a migration on the S3 store leaves its chunks and final manifest in the bucket, holding the memory at stun', async () => {
  const vmId = 's3-plain';
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 64 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 2 ** 20 },
    seed: 81,
  });
  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true, keepPageFile: true },
  });
  const result = await fx.ferry.result(workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  for (const round of result.rounds) expect(round.storeLagBytes).toBeGreaterThanOrEqual(0);
  expect(result.switchover?.storeLagBytes).toBeGreaterThanOrEqual(0);
  console.log(
    `store lag: rounds ${result.rounds.map((r) => r.storeLagBytes).join(', ')} bytes; ` +
      `switchover ${result.switchover?.storeLagBytes} bytes`,
  );
  await expectSameMemory(fx, vmId);

  // The objects themselves, listed in the bucket with a client of our own.
  const ref = parseStoreRef(fx.cluster.env.store);
  if (ref.kind !== 's3') throw new Error(`the cluster's store is not S3: ${fx.cluster.env.store}`);
  const { endpoint, region, accessKeyId, secretAccessKey } = seaweed();
  const bucket = new S3ObjectStore({
    ...{ endpoint, region, bucket: ref.bucket, prefix: ref.prefix },
    credentials: { accessKeyId, secretAccessKey },
  });
  const folder = `migrations/${result.migrationId}/`;
  const keys = await bucket.list(folder).finally(() => bucket.close());
  const chunks = keys.filter((key) => key.startsWith(`${folder}chunks/`));
  expect(chunks).toEqual(Array.from({ length: 64 }, (_, c) => `${folder}chunks/${String(c).padStart(8, '0')}`));
  expect(keys).toEqual(
    expect.arrayContaining([`${folder}header.json`, `${folder}manifests/final`, `${folder}complete`]),
  );

  // What the bucket holds is the source's memory at stun (the source stays stunned), page by page.
  const store = openPageStore(fx.cluster.env.store, fx.cluster.processEnv);
  const check = await compareWithPageFile(fx.ferry, {
    vmId,
    hostId: 'h1',
    store,
    migrationId: result.migrationId,
    dir: path.join(fx.cluster.env.stateDir, 'dumps'),
  });
  expect(check.details).toEqual([]);
  expect(check.identical).toBe(check.pages);
  // Unencrypted, the chunks hold the guest's pages as they are (the sealed test below finds none).
  const memory = await guestMemoryOn(fx, 'h1', vmId);
  const { inClear, nonZero } = pagesInClear(memory, await storedMigrationBytes(fx.cluster, result.migrationId));
  expect(inClear).toBeGreaterThan(nonZero / 2);
  await store.removeMigration(result.migrationId);
  closePageStores();
  await fx.ferry.destroyVm('h1', vmId);
  await fx.ferry.destroyVm('h2', vmId);
});

test('an encrypted migration on the S3 store leaves only sealed chunks in the bucket', async () => {
  const vmId = 's3-sealed';
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 16 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 2 ** 20 },
    seed: 83,
  });
  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true, keepPageFile: true, encrypt: true },
  });
  const result = await fx.ferry.result(workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  await expectSameMemory(fx, vmId);

  const memory = await guestMemoryOn(fx, 'h1', vmId);
  const stored = await storedMigrationBytes(fx.cluster, result.migrationId);
  const { inClear, nonZero } = pagesInClear(memory, stored);
  expect(nonZero).toBeGreaterThan(memory.length / 4096 / 2);
  expect(stored.length).toBeGreaterThan(memory.length);
  expect(inClear).toBe(0);
  await openPageStore(fx.cluster.env.store, fx.cluster.processEnv).removeMigration(result.migrationId);
  await fx.ferry.destroyVm('h1', vmId);
  await fx.ferry.destroyVm('h2', vmId);
});

describe('a store named wrongly is refused before anything starts, and the VM keeps running', () => {
  const vmId = 's3-steady';
  const store = () => fx.cluster.env.store;

  beforeAll(async () => {
    await fx.ferry.createVm('h1', {
      vmId,
      memoryBytes: 16 * 2 ** 20,
      workload: { type: 'random', rateBytesPerSec: 5e6 },
      seed: 82,
    });
  });

  afterAll(async () => {
    await fx.ferry.destroyVm('h1', vmId);
  });

  async function expectNoMigration(): Promise<void> {
    const describe = fx.cluster.client.workflow.getHandle(migrationWorkflowId(vmId)).describe();
    await expect(describe).rejects.toBeInstanceOf(WorkflowNotFoundError);
    await expectRunningOnSource(vmId);
  }

  test('a bucket that does not exist', async () => {
    const out = await ferryCli(
      fx.cluster.processEnv,
      'migrate',
      vmId,
      '--to',
      'h2',
      '--store',
      's3://no-such-bucket/x',
    );
    console.log(`missing bucket: exit ${out.code}, ${out.line}`);
    expect(out.code).toBe(EXIT.usage);
    expect(out.line).toMatch(/bucket no-such-bucket does not exist/);
    await expectNoMigration();
  });

  test('a wrong secret key', async () => {
    const env = { ...fx.cluster.processEnv, FERRY_S3_SECRET_ACCESS_KEY: 'not-the-secret' };
    const out = await ferryCli(env, 'migrate', vmId, '--to', 'h2', '--store', store());
    console.log(`wrong secret: exit ${out.code}, ${out.line}`);
    expect(out.code).toBe(EXIT.usage);
    expect(out.line).toMatch(/access denied/i);
    expect(out.line).toContain(seaweed().accessKeyId);
    await expectNoMigration();
  });

  test('an endpoint nobody listens on', async () => {
    const endpoint = `http://127.0.0.1:${await pickFreePort()}`;
    const env = { ...fx.cluster.processEnv, FERRY_S3_ENDPOINT: endpoint };
    const startedAt = Date.now();
    const out = await ferryCli(env, 'migrate', vmId, '--to', 'h2', '--store', store());
    console.log(`unreachable endpoint: exit ${out.code} after ${Date.now() - startedAt} ms, ${out.line}`);
    expect(out.code).toBe(EXIT.usage);
    expect(out.line).toMatch(/unreachable/);
    expect(out.line).toContain(endpoint);
    await expectNoMigration();
  });

  test('the workflow started directly, past the CLI, fails with StoreUnavailable naming the bucket', async () => {
    const workflowId = await fx.ferry.startMigration({
      vmId,
      sourceHost: 'h1',
      destinationHost: 'h2',
      policy: { store: 's3://no-such-bucket/x' },
    });
    const failure = await fx.cluster.client.workflow
      .getHandle(workflowId)
      .result()
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    const chain: ApplicationFailure[] = [];
    for (let e: unknown = failure; e instanceof Error; e = (e as { cause?: unknown }).cause)
      if (e instanceof ApplicationFailure) chain.push(e);
    const unavailable = chain.find((f) => f.type === 'StoreUnavailable');
    console.log(`workflow: ${chain.map((f) => `${f.type}: ${f.message}`).join(' <- ')}`);
    expect(unavailable?.message).toMatch(/bucket no-such-bucket does not exist/);
    expect(unavailable?.nonRetryable).toBe(true);
    await expectRunningOnSource(vmId);
  });
});

test('S3 server killed mid pre-copy and restarted: the migration completes and reports the outage', async () => {
  const vmId = 's3-restarted';
  const { workflowId } = await migrateNewGuest(fx, vmId, 83);
  expect((await fx.ferry.progress(workflowId)).phase).toBe('pre-copy');
  seaweed().kill('SIGKILL');
  const killedAt = Date.now();
  await new Promise((r) => setTimeout(r, 3_000));
  await seaweed().restart();
  const downMs = Date.now() - killedAt;

  const result = await endedResult(fx, workflowId);
  console.log(
    `S3 down for ${downMs} ms: ${result.outcome} (${result.reason ?? 'no failure'}), downtime ` +
      `${result.downtimeMs.toFixed(0)} ms, switchover storeLagBytes ${result.switchover?.storeLagBytes}, ` +
      `storeDurableMs ${result.switchover?.storeDurableMs.toFixed(0)}; incidents ${JSON.stringify(result.incidents)}`,
  );
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.switchover?.storeLagBytes).toBeGreaterThanOrEqual(0);
  await expectSameMemory(fx, vmId);
  await fx.ferry.destroyVm('h1', vmId);
  await fx.ferry.destroyVm('h2', vmId);
  expect(result.incidents).toContainEqual(
    expect.objectContaining({ what: expect.stringMatching(/store.*(unreachable|down|unavailable)/i) }),
  );
});

// Last: the S3 server stays down.
test('S3 server killed mid pre-copy and not restarted: the migration rolls back and the source runs on intact', async () => {
  const vmId = 's3-lost';
  const { workflowId } = await migrateNewGuest(fx, vmId, 84);
  expect((await fx.ferry.progress(workflowId)).phase).toBe('pre-copy');
  seaweed().kill('SIGKILL');
  const killedAt = Date.now();

  // The source waits up to 30 s, guest running, for the store to come back before it stuns; then
  // the rollback's store reads and deletes each give up after the client's 20 s of retries.
  const result = await endedWithin(workflowId, 150_000);
  console.log(
    `S3 lost: ${result.outcome} ${Date.now() - killedAt} ms after the kill, running on ${result.runningOn}; ` +
      `reason: ${result.reason}; incidents ${JSON.stringify(result.incidents)}`,
  );
  expect(result.outcome).toBe('failed');
  expect(result.runningOn).toBe('h1');
  expect(result.reason).toMatch(/store|S3/i);
  await expectRunningOnSource(vmId);
});
