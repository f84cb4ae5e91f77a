/**
 * Batches lost on the page stream are noticed and recovered from the page file. The loss is real:
 * the destination VMM is frozen with SIGSTOP while the nats-server's per-client buffer (8 MiB) is
 * smaller than the credit window (64 MiB), so the server drops the stalled subscriber's messages
 * (a slow consumer).
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
  cluster = await startTestCluster(['h1', 'h2'], { natsMaxPendingBytes: 8 * 2 ** 20 });
  ferry = await FerryClient.connect(cluster.temporal.address);
});

afterAll(async () => {
  await ferry?.close();
  await cluster?.stop();
});

test('batches dropped while the destination stalls are written off and filled from the page file', async () => {
  const vmId = 'lossy-guest';
  await ferry.createVm('h1', {
    vmId,
    memoryBytes: 512 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 4 * 2 ** 20 },
    seed: 21,
  });
  const workflowId = await ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true },
  });

  // Freeze the destination once pages are flowing into it, long enough for the server to give up on it.
  const driver = new SimulatedDriver({ hostId: 'h2', stateDir: cluster.env.stateDir });
  let destinationPid: number | undefined;
  for (let i = 0; i < 800 && destinationPid === undefined; i += 1) {
    const record = await driver.getVm(vmId);
    if (record) {
      // The record appears when the VMM is spawned, its socket a moment later.
      const client = await driver.control(vmId).catch(() => undefined);
      const status = await client
        ?.call<IncomingStatus>('migration.incomingStatus', { migrationId: workflowId })
        .catch(() => undefined);
      client?.close();
      if (status && status.batches > 0) destinationPid = record.pid;
    }
    if (destinationPid === undefined) await new Promise((r) => setTimeout(r, 10));
  }
  expect(destinationPid).toBeDefined();
  process.kill(destinationPid as number, 'SIGSTOP');
  await new Promise((r) => setTimeout(r, 3_000));
  process.kill(destinationPid as number, 'SIGCONT');

  const result = await ferry.result(workflowId);
  expect(result.outcome).toBe('completed');
  expect(result.verified).toBe(true);
  expect(result.gapBatches).toBeGreaterThan(0);
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
