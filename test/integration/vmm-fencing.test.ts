/**
 * Who may run a guest, on real services (Temporal dev server, nats-server, host agents, VMM
 * processes): pausing is a counted hold, so a memory check or dump that overlaps the switchover's
 * stun does not un-stun the source; a VMM that does not own its VM (a source that handed over, a
 * destination before its epoch) refuses `resume`; two creations of one VM id at once leave exactly
 * one VM, on one host or across hosts.
 */
import * as path from 'node:path';
import { CONTROL_TASK_QUEUE } from '../../temporal-config';
import { SimulatedDriver } from '../../vmm/driver';
import { isVmmAlive } from '../../vmm/vm-records';
import type { VmmStatus } from '../../vmm/vmm-methods';
import type { VmSummary } from '../../activities/types';
import { expectSameMemory, runningCopies, useCluster, vmmCall, engineCall } from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster();
const MiB = 2 ** 20;

/** Every message of an error's cause chain, joined. */
function messages(err: unknown): string {
  const parts: string[] = [];
  for (let e = err; e instanceof Error; e = e.cause) parts.push(e.message);
  return parts.join(': ');
}

function status(hostId: string, vmId: string): Promise<VmmStatus> {
  return vmmCall<VmmStatus>(fx.cluster, hostId, vmId, 'status');
}

async function createGuest(vmId: string, memoryBytes = 512 * MiB): Promise<void> {
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 4 * MiB },
    seed: vmId.length,
  });
}

test('memory dumps and checks that overlap the switchover leave the source stunned and one copy running', async () => {
  await createGuest('fence-stun');
  // A long stun, so that a dump under way when the switchover stuns the guest ends inside it.
  await engineCall(fx.cluster, 'h1', 'fence-stun', 'migration.armFault', {
    point: 'source.after-stun',
    action: 'delay',
    delayMs: 1_500,
  });
  const workflowId = await fx.ferry.startMigration({
    vmId: 'fence-stun',
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true },
  });
  let done = false;
  const result = fx.ferry.result(workflowId).finally(() => {
    done = true;
  });
  const dumpPath = path.join(fx.cluster.env.stateDir, 'fence-stun.overlap.mem');
  let dumps = 0;
  // Back to back until the migration ends: the stun lands inside one of them.
  while (!done) {
    await vmmCall(fx.cluster, 'h1', 'fence-stun', dumps % 4 === 3 ? 'verify' : 'dumpMemory', { path: dumpPath });
    dumps += 1;
  }
  expect((await result).outcome).toBe('completed');
  expect(dumps).toBeGreaterThan(1);
  const source = await status('h1', 'fence-stun');
  expect(source.vcpu.state).toBe('paused');
  expect(source.owner).toBe(false);
  expect(await runningCopies(fx, 'fence-stun')).toEqual(['h2']);
  await expectSameMemory(fx, 'fence-stun');

  // The source handed the VM over: no resume runs its guest again.
  await expect(vmmCall(fx.cluster, 'h1', 'fence-stun', 'resume')).rejects.toMatchObject({
    name: 'VmmCallError',
    remoteName: 'VmmNotOwnerError',
    message: expect.stringMatching(/does not own the VM/),
  });
  expect((await status('h1', 'fence-stun')).vcpu.state).toBe('paused');
  await fx.ferry.destroyVm('h1', 'fence-stun');
  await fx.ferry.destroyVm('h2', 'fence-stun');
});

test('a destination that has not taken its ownership epoch refuses resume and stays paused', async () => {
  const driver = new SimulatedDriver({ hostId: 'h2', stateDir: fx.cluster.env.stateDir });
  await driver.prepareIncoming('fence-in', 16 * MiB);
  try {
    await expect(vmmCall(fx.cluster, 'h2', 'fence-in', 'resume')).rejects.toMatchObject({
      remoteName: 'VmmNotOwnerError',
    });
    expect(await status('h2', 'fence-in')).toMatchObject({ owner: false, vcpu: { state: 'paused' } });
  } finally {
    await driver.destroyVm('fence-in');
  }
});

test('a pause asked while a dump runs still holds the guest once the dump ends', async () => {
  await createGuest('fence-pause');
  const client = await new SimulatedDriver({ hostId: 'h1', stateDir: fx.cluster.env.stateDir }).control('fence-pause');
  try {
    // One connection: the dump's request is taken before the pause's.
    const dump = client.call('dumpMemory', { path: path.join(fx.cluster.env.stateDir, 'fence-pause.mem') });
    const pause = client.call('pause');
    await Promise.all([dump, pause]);
    expect(await status('h1', 'fence-pause')).toMatchObject({ holds: ['pause'], vcpu: { state: 'paused' } });
    await client.call('resume');
    expect(await status('h1', 'fence-pause')).toMatchObject({ holds: [], vcpu: { state: 'running' } });
  } finally {
    client.close();
    await fx.ferry.destroyVm('h1', 'fence-pause');
  }
});

test('two creations of one VM id at once leave exactly one VM, on one host and across hosts', async () => {
  const spec = { vmId: 'fence-twice', memoryBytes: 64 * MiB, workload: { type: 'idle' as const } };
  const provision = (hostId: string, n: number): Promise<VmSummary> =>
    fx.cluster.client.workflow.execute('provisionVm', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: `provision-fence-twice-${hostId}-${n}-${Date.now()}`,
      args: [{ hostId, ...spec }],
    });
  const acrossHosts = await Promise.allSettled([provision('h1', 1), provision('h2', 2)]);
  expect(acrossHosts.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  const refused = acrossHosts.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  expect(messages(refused?.reason)).toMatch(/already exists/);
  const copies = await runningCopies(fx, 'fence-twice');
  expect(copies).toHaveLength(1);
  await fx.ferry.destroyVm(copies[0] ?? 'h1', 'fence-twice');

  // Two drivers of one host (an agent and a restarted one, say): one VM, its record intact.
  const stateDir = fx.cluster.env.stateDir;
  const drivers = [1, 2].map(() => new SimulatedDriver({ hostId: 'h2', stateDir }));
  const oneHost = await Promise.allSettled(drivers.map((d) => d.createVm({ ...spec, vmId: 'fence-once' })));
  const won = oneHost.filter((r) => r.status === 'fulfilled');
  expect(won).toHaveLength(1);
  expect(oneHost.find((r) => r.status === 'rejected')).toMatchObject({ reason: { name: 'VmExistsError' } });
  const record = await drivers[0]?.getVm('fence-once');
  expect(record?.pid).toBe((won[0] as PromiseFulfilledResult<{ pid: number }>).value.pid);
  expect(isVmmAlive(record?.pid ?? 0, 'fence-once')).toBe(true);
  await drivers[0]?.destroyVm('fence-once');
});
