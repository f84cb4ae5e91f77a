/**
 * Control-plane processes die mid-migration and come back: the migration carries on from where
 * Temporal and the VMMs are, the guest keeps running throughout, and its memory arrives intact.
 * Processes are killed with real signals; nothing is faked.
 */
import { startTestCluster, type TestCluster } from '../../infra/test-cluster';
import { FerryClient } from '../../cli/ferry-client';
import { compareMigratedMemory } from '../../verification';
import { SimulatedDriver } from '../../vmm/driver';
import type { IncomingStatus } from '../../data-plane';

jest.setTimeout(180_000);

let cluster: TestCluster;
let ferry: FerryClient;

beforeAll(async () => {
  cluster = await startTestCluster();
  ferry = await FerryClient.connect(cluster.temporal.address);
});

afterAll(async () => {
  await ferry?.close();
  await cluster?.stop();
});

/** Resolves once the destination VMM of `vmId` has applied at least one batch (pages flow). */
async function pagesFlowing(vmId: string, migrationId: string): Promise<void> {
  const driver = new SimulatedDriver({ hostId: 'h2', stateDir: cluster.env.stateDir });
  for (let i = 0; i < 2_000; i += 1) {
    const client = (await driver.getVm(vmId)) ? await driver.control(vmId).catch(() => undefined) : undefined;
    const status = await client
      ?.call<IncomingStatus>('migration.incomingStatus', { migrationId })
      .catch(() => undefined);
    client?.close();
    if (status && status.batches > 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('no page reached the destination');
}

async function guestWrites(hostId: string, vmId: string): Promise<number> {
  const client = await new SimulatedDriver({ hostId, stateDir: cluster.env.stateDir }).control(vmId);
  try {
    return (await client.call<{ vcpu: { pagesWritten: number } }>('status')).vcpu.pagesWritten;
  } finally {
    client.close();
  }
}

async function migrateThrough(vmId: string, fault: () => Promise<void>): Promise<void> {
  await ferry.createVm('h1', {
    vmId,
    memoryBytes: 512 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 4 * 2 ** 20 },
    seed: 31,
  });
  const workflowId = await ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true },
  });
  await pagesFlowing(vmId, workflowId);
  await fault();

  const result = await ferry.result(workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  // No round was sent twice: a retried round answers from the VMM's first run instead of starting
  // over, so what the destination received is what the rounds and the switchover sent.
  const sentByRounds = result.rounds.reduce((sum, r) => sum + r.bytesSent, 0);
  const finalBytes = ((result.switchover?.finalPages ?? 0) + 256) * 4096;
  expect(result.bytesViaNetwork).toBeGreaterThanOrEqual(sentByRounds);
  expect(result.bytesViaNetwork).toBeLessThanOrEqual(sentByRounds + finalBytes);
  const check = await compareMigratedMemory(ferry, {
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    dir: cluster.env.stateDir,
  });
  expect(check.details).toEqual([]);
  expect(check.ok).toBe(true);
  await ferry.destroyVm('h1', vmId);
  await ferry.destroyVm('h2', vmId);
}

test('the orchestrator worker killed with SIGKILL mid pre-copy and restarted: the workflow carries on', async () => {
  await migrateThrough('orchestrator-crash', async () => {
    await cluster.killWorker('orchestrator');
    await cluster.restartWorker('orchestrator');
  });
});

test('the source host agent killed with SIGKILL mid-round and restarted: the guest keeps running and the round completes', async () => {
  await migrateThrough('source-agent-crash', async () => {
    await cluster.killWorker('host-h1');
    const before = await guestWrites('h1', 'source-agent-crash');
    await new Promise((r) => setTimeout(r, 300));
    expect(await guestWrites('h1', 'source-agent-crash')).toBeGreaterThan(before);
    await cluster.restartWorker('host-h1');
  });
});

test('the destination host agent killed with SIGKILL mid pre-copy and restarted: the receiver goes on', async () => {
  await migrateThrough('destination-agent-crash', async () => {
    await cluster.killWorker('host-h2');
    await cluster.restartWorker('host-h2');
  });
});

test('the Temporal dev server killed and restarted on its database mid-migration: the workflow carries on', async () => {
  await migrateThrough('temporal-crash', async () => {
    cluster.temporal.kill('SIGKILL');
    await cluster.temporal.restart();
  });
});
