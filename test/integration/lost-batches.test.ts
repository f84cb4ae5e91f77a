/**
 * Batches lost on the page stream are noticed and recovered from the page file. The loss is real:
 * the destination VMM is frozen with SIGSTOP while the nats-server's per-client buffer (8 MiB) is
 * smaller than the credit window (16 MiB), so the server drops the stalled subscriber's messages
 * (a slow consumer).
 */
import { expectSameMemory, migrateNewGuest, useCluster } from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster({ natsMaxPendingBytes: 8 * 2 ** 20 });

test('batches dropped while the destination stalls are written off and filled from the page file', async () => {
  const vmId = 'lossy-guest';
  const { workflowId, destinationPid } = await migrateNewGuest(fx, vmId, 21);

  // Freeze the destination while pages flow into it, long enough for the server to give up on it.
  process.kill(destinationPid, 'SIGSTOP');
  await new Promise((r) => setTimeout(r, 3_000));
  process.kill(destinationPid, 'SIGCONT');

  const result = await fx.ferry.result(workflowId);
  expect(result.outcome).toBe('completed');
  expect(result.verified).toBe(true);
  expect(result.gapBatches).toBeGreaterThan(0);
  expect(result.bytesViaStore).toBeGreaterThan(0);

  await expectSameMemory(fx, vmId);
});
