/**
 * The network lane dies for good: nats-server is killed with SIGKILL mid pre-copy and never comes
 * back. The source notices the dead stream, carries on through the page file alone, and hands
 * over through the file's mailbox; the destination fills what it lacks from the file.
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

test('nats-server killed mid pre-copy and not restarted: the migration completes through the page file', async () => {
  const vmId = 'cut-off-guest';
  await ferry.createVm('h1', {
    vmId,
    memoryBytes: 512 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 4 * 2 ** 20 },
    seed: 41,
  });
  const workflowId = await ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true },
  });

  const driver = new SimulatedDriver({ hostId: 'h2', stateDir: cluster.env.stateDir });
  for (let i = 0; i < 2_000; i += 1) {
    const client = (await driver.getVm(vmId)) ? await driver.control(vmId).catch(() => undefined) : undefined;
    const status = await client
      ?.call<IncomingStatus>('migration.incomingStatus', { migrationId: workflowId })
      .catch(() => undefined);
    client?.close();
    if (status && status.batches > 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  cluster.nats.kill('SIGKILL');

  const result = await ferry.result(workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.rounds.some((r) => r.lane === 'store')).toBe(true);
  expect(result.switchover?.handoverLane).toBe('store');
  expect(result.bytesViaStore).toBeGreaterThan(0);

  const check = await compareMigratedMemory(ferry, {
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    dir: cluster.env.stateDir,
  });
  expect(check.details).toEqual([]);
  expect(check.ok).toBe(true);
});
