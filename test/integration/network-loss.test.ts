/**
 * The network lane dies for good: nats-server is killed with SIGKILL mid pre-copy and never comes
 * back. The source notices the dead stream, carries on through the page file alone, and hands
 * over through the file's mailbox; the destination reads the file while the source writes it (from
 * each round's manifest) and fills the rest from the file at switchover. The same holds with the
 * pages sealed in the file (`encrypt`): the destination opens every page it reads there.
 */
import { expectSameMemory, migrateNewGuest, useCluster } from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster();

test.each([
  ['', 'cut-off-guest', false],
  [' sealed at rest (encrypted)', 'cut-off-sealed', true],
])(
  'nats-server killed mid pre-copy and not restarted: the migration completes through the page file%s',
  async (_, vmId, encrypt) => {
    const { workflowId } = await migrateNewGuest(fx, vmId, 41, encrypt ? { encrypt } : {});
    fx.cluster.nats.kill('SIGKILL');
    try {
      const result = await fx.ferry.result(workflowId);
      expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
      expect(result.rounds.some((r) => r.lane === 'store')).toBe(true);
      expect(result.switchover?.handoverLane).toBe('store');
      expect(result.bytesViaStore).toBeGreaterThan(0);
      await expectSameMemory(fx, vmId);
    } finally {
      // The next test needs the network lane back.
      await fx.cluster.nats.restart();
    }
  },
);

test('nats-server killed mid pre-copy and restarted: the stream resumes and what was lost comes from the page file', async () => {
  const vmId = 'reconnected-guest';
  const { workflowId } = await migrateNewGuest(fx, vmId, 43);
  fx.cluster.nats.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 1_500));
  await fx.cluster.nats.restart();

  const result = await fx.ferry.result(workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.gapBatches).toBeGreaterThan(0);
  expect(result.bytesViaStore).toBeGreaterThan(0);
  // The rounds after the outage ran on the network again.
  expect(result.rounds[result.rounds.length - 1]?.lane).toBe('network');
  expect(result.switchover?.handoverLane).toBe('network');
  await expectSameMemory(fx, vmId);
});
