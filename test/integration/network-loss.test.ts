/**
 * The network lane dies for good: nats-server is killed with SIGKILL mid pre-copy and never comes
 * back. The source notices the dead stream, carries on through the page file alone, and hands
 * over through the file's mailbox; the destination fills what it lacks from the file.
 */
import { expectSameMemory, migrateNewGuest, useCluster } from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster();

test('nats-server killed mid pre-copy and not restarted: the migration completes through the page file', async () => {
  const vmId = 'cut-off-guest';
  const { workflowId } = await migrateNewGuest(fx, vmId, 41);
  fx.cluster.nats.kill('SIGKILL');

  const result = await fx.ferry.result(workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.rounds.some((r) => r.lane === 'store')).toBe(true);
  expect(result.switchover?.handoverLane).toBe('store');
  expect(result.bytesViaStore).toBeGreaterThan(0);

  await expectSameMemory(fx, vmId);
});
