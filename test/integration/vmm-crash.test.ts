/**
 * A VMM process SIGKILLed mid pre-copy. The destination's: everything sent so far is in the page
 * file, so a new destination VMM takes its place, rebuilds from the file while the stream goes on,
 * and the migration completes. The source's: the guest's only process is gone, so the migration
 * fails at once (no retries against a dead process), says so, and leaves no copy behind.
 */
import { endedResult, expectSameMemory, migrateNewGuest, runningCopies, useCluster } from './support/cluster-fixture';
import { SimulatedDriver } from '../../vmm/driver';

jest.setTimeout(180_000);

const fx = useCluster();

test('destination VMM killed mid pre-copy: a new one rebuilds from the page file and the migration completes', async () => {
  const vmId = 'destination-vmm-crash';
  const { workflowId, destinationPid } = await migrateNewGuest(fx, vmId, 91);
  process.kill(destinationPid, 'SIGKILL');

  const result = await endedResult(fx, workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.incidents).toContainEqual(
    expect.objectContaining({ what: expect.stringContaining('the destination VMM exited') }),
  );
  // The new destination read from the file what its predecessor had received.
  expect(result.bytesViaStore).toBeGreaterThan(0);
  const record = await new SimulatedDriver({ hostId: 'h2', stateDir: fx.cluster.env.stateDir }).getVm(vmId);
  expect(record?.pid).not.toBe(destinationPid);
  expect(await runningCopies(fx, vmId)).toEqual(['h2']);
  await expectSameMemory(fx, vmId);
  await fx.ferry.destroyVm('h1', vmId);
  await fx.ferry.destroyVm('h2', vmId);
});

test('source VMM killed mid pre-copy: the migration fails at once and says the VMM exited; no copy is left', async () => {
  const vmId = 'source-vmm-crash';
  await migrateNewGuest(fx, vmId, 92);
  const source = await new SimulatedDriver({ hostId: 'h1', stateDir: fx.cluster.env.stateDir }).getVm(vmId);
  if (!source) throw new Error('the source VM is not on h1');
  process.kill(source.pid, 'SIGKILL');

  const result = await endedResult(fx, `migrate-${vmId}`);
  expect(result.outcome).toBe('failed');
  expect(result.runningOn).toBeNull();
  expect(result.reason).toContain(`the VMM of VM ${vmId} on host h1 exited`);
  expect(await runningCopies(fx, vmId)).toEqual([]);
  const [listing] = await fx.ferry.listVms(['h2']);
  expect((listing?.vms ?? []).map((vm) => vm.vmId)).not.toContain(vmId);
});
