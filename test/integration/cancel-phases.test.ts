/**
 * Cancelling a migration in each of its phases, by the `cancel` signal and by Temporal's own
 * cancellation, and then migrating the same VM again to a host that never held it. After each
 * cancel exactly one copy runs, where the result says; the second migration completes and its
 * memory is compared page by page with the stunned source's. A prepare that waits on a host nobody
 * serves is cancelled too, by `ferry cancel <vm>` (which finds a migration started under any
 * workflow id by its VmId search attribute) and by Temporal's own cancellation.
 */
import * as path from 'node:path';
import { CONTROL_TASK_QUEUE } from '../../temporal-config';
import { compareMigratedMemory } from '../../verification';
import type { MigrateVmInput, MigrationResult } from '../../workflows/types';
import { endedResult, pagesFlowing, runningCopies, useCluster, vmmCall, engineCall } from './support/cluster-fixture';
import { runFerryCli } from './support/run-cli';

jest.setTimeout(240_000);

const fx = useCluster({ hosts: ['h1', 'h2', 'h3'] });

const GUEST = {
  memoryBytes: 256 * 2 ** 20,
  workload: { type: 'hotset' as const, rateBytesPerSec: 10e6, hotSetBytes: 4 * 2 ** 20 },
};

async function waitForPhase(workflowId: string, phase: string): Promise<void> {
  for (let i = 0; i < 2_000; i += 1) {
    if ((await fx.ferry.progress(workflowId)).phase === phase) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`migration ${workflowId} never reached phase ${phase}`);
}

/** Migrates `vmId` from `from` to a host that never held it, and compares memories page by page. */
async function migrateAgain(vmId: string, from: string, to: string): Promise<void> {
  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: from,
    destinationHost: to,
    policy: { keepSourceAfterSwitchover: true },
  });
  const result = await fx.ferry.result(workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: to, verified: true });
  const check = await compareMigratedMemory(fx.ferry, {
    vmId,
    sourceHost: from,
    destinationHost: to,
    dir: path.join(fx.cluster.env.stateDir, 'dumps'),
  });
  expect(check.details).toEqual([]);
  expect(check.ok).toBe(true);
  expect(check.sourceState).not.toBe('running');
  expect(await runningCopies(fx, vmId)).toEqual([to]);
  for (const host of fx.cluster.hosts) await fx.ferry.destroyVm(host, vmId);
}

/** After a cancelled migration: the source runs alone, unharmed, and the destination holds nothing. */
async function expectRolledBack(vmId: string, workflowId: string): Promise<void> {
  const result = await endedResult(fx, workflowId);
  expect(result).toMatchObject({ outcome: 'cancelled', runningOn: 'h1' });
  expect(await runningCopies(fx, vmId)).toEqual(['h1']);
  const [listing] = await fx.ferry.listVms(['h2']);
  expect((listing?.vms ?? []).map((vm) => vm.vmId)).not.toContain(vmId);
  expect(await vmmCall(fx.cluster, 'h1', vmId, 'verify')).toMatchObject({ badPages: 0 });
}

test('cancel signal during prepare: rolled back before any page moves; then migrates to a fresh host', async () => {
  const vmId = 'cancel-in-prepare';
  await fx.ferry.createVm('h1', { vmId, ...GUEST, seed: 81 });
  const input: MigrateVmInput = { vmId, sourceHost: 'h1', destinationHost: 'h2' };
  // Signal-with-start delivers the cancel with the workflow's first task, before prepare ends.
  const handle = await fx.cluster.client.workflow.signalWithStart('migrateVm', {
    taskQueue: CONTROL_TASK_QUEUE,
    workflowId: `cancel-prepare-${Date.now()}`,
    args: [input],
    signal: 'cancel',
    signalArgs: [{ reason: 'test cancels in prepare' }],
  });
  await expectRolledBack(vmId, handle.workflowId);
  expect((await endedResult(fx, handle.workflowId)).rounds).toEqual([]);
  await migrateAgain(vmId, 'h1', 'h3');
});

test('cancel signal during pre-copy: rolled back; then migrates to a fresh host', async () => {
  const vmId = 'cancel-in-precopy';
  await fx.ferry.createVm('h1', { vmId, ...GUEST, seed: 82 });
  const workflowId = await fx.ferry.startMigration({ vmId, sourceHost: 'h1', destinationHost: 'h2' });
  await pagesFlowing(fx.cluster, vmId, workflowId);
  await fx.ferry.cancel(workflowId, 'test cancels in pre-copy');
  await expectRolledBack(vmId, workflowId);
  await migrateAgain(vmId, 'h1', 'h3');
});

test('Temporal cancellation of the workflow during pre-copy: rolled back; then migrates to a fresh host', async () => {
  const vmId = 'temporal-cancel-in-precopy';
  await fx.ferry.createVm('h1', { vmId, ...GUEST, seed: 83 });
  const workflowId = await fx.ferry.startMigration({ vmId, sourceHost: 'h1', destinationHost: 'h2' });
  await pagesFlowing(fx.cluster, vmId, workflowId);
  await fx.cluster.client.workflow.getHandle(workflowId).cancel();
  await expectRolledBack(vmId, workflowId);
  await migrateAgain(vmId, 'h1', 'h3');
});

/** Starts migrating a new guest h1 -> h2 and resolves once it is in a switchover held for 3 s. */
async function migrateIntoHeldSwitchover(vmId: string, seed: number): Promise<string> {
  await fx.ferry.createVm('h1', { vmId, ...GUEST, seed });
  const workflowId = await fx.ferry.startMigration({ vmId, sourceHost: 'h1', destinationHost: 'h2' });
  await pagesFlowing(fx.cluster, vmId, workflowId);
  // Holds the destination for 3 s when it is asked to finish, so the cancel lands in the switchover.
  await engineCall(fx.cluster, 'h2', vmId, 'migration.armFault', {
    point: 'destination.final',
    action: 'delay',
    delayMs: 3_000,
  });
  await waitForPhase(workflowId, 'switchover');
  return workflowId;
}

test('cancel signal during the switchover is too late: the migration completes; then moves on to a fresh host', async () => {
  const vmId = 'cancel-in-switchover';
  const workflowId = await migrateIntoHeldSwitchover(vmId, 84);
  await fx.ferry.cancel(workflowId, 'test cancels in the switchover');
  const result = await endedResult(fx, workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(await runningCopies(fx, vmId)).toEqual(['h2']);
  await migrateAgain(vmId, 'h2', 'h3');
});

test('Temporal cancellation during the switchover: exactly one copy runs, where the result says; then it moves on', async () => {
  const vmId = 'temporal-cancel-in-switchover';
  const workflowId = await migrateIntoHeldSwitchover(vmId, 85);
  await fx.cluster.client.workflow.getHandle(workflowId).cancel();
  const result = await endedResult(fx, workflowId);
  // The source and the destination race for the ownership epoch; whichever won runs, alone.
  expect(['h1', 'h2']).toContain(result.runningOn);
  expect(await runningCopies(fx, vmId)).toEqual([result.runningOn]);
  const other = result.runningOn === 'h1' ? 'h2' : 'h1';
  await fx.ferry.destroyVm(other, vmId);
  await migrateAgain(vmId, result.runningOn as string, 'h3');
});

/** Starts migrating `vmId` from h1 to h9, a host nobody serves, under a workflow id ferry did not choose. */
async function migrateToNowhere(vmId: string, seed: number): Promise<string> {
  await fx.ferry.createVm('h1', { vmId, ...GUEST, seed });
  const workflowId = `hung-prepare-${vmId}-${Date.now()}`;
  const input: MigrateVmInput = { vmId, sourceHost: 'h1', destinationHost: 'h9' };
  await fx.cluster.client.workflow.start('migrateVm', { taskQueue: CONTROL_TASK_QUEUE, workflowId, args: [input] });
  await waitForPhase(workflowId, 'prepare');
  return workflowId;
}

/** The migration's result; fails the test if it has not ended within `boundMs`. */
async function endedWithin(workflowId: string, boundMs: number): Promise<MigrationResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${workflowId} still running ${boundMs} ms after the cancel`)), boundMs);
  });
  try {
    return await Promise.race([endedResult(fx, workflowId), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once Temporal's visibility lists `workflowId` as the running migration of `vmId`. */
async function visibleAsMigrationOf(vmId: string, workflowId: string): Promise<void> {
  const query = `WorkflowType='migrateVm' AND VmId='${vmId}' AND ExecutionStatus='Running'`;
  for (let i = 0; i < 500; i += 1) {
    for await (const execution of fx.cluster.client.workflow.list({ query })) {
      if (execution.workflowId === workflowId) return;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${workflowId} never became visible as the migration of ${vmId}`);
}

test('`ferry cancel <vm>` during a prepare hung on a host that does not exist finds the migration by its VM and cancels it within seconds; the VM runs on', async () => {
  const vmId = 'cancel-in-hung-prepare';
  const workflowId = await migrateToNowhere(vmId, 86);
  await visibleAsMigrationOf(vmId, workflowId);

  const cancel = await runFerryCli(fx.cluster.processEnv, ['cancel', vmId]);
  expect(cancel).toMatchObject({ code: 0 });
  expect(cancel.stdout).toContain(workflowId);

  const result = await endedWithin(workflowId, 10_000);
  expect(result).toMatchObject({ outcome: 'cancelled', runningOn: 'h1', rounds: [] });
  expect(await runningCopies(fx, vmId)).toEqual(['h1']);
  expect(await vmmCall(fx.cluster, 'h1', vmId, 'verify')).toMatchObject({ badPages: 0 });
  await fx.ferry.destroyVm('h1', vmId);
});

test('Temporal cancellation during a prepare hung on a host that does not exist ends the workflow as cancelled within seconds; the VM runs on', async () => {
  const vmId = 'temporal-cancel-in-hung-prepare';
  const workflowId = await migrateToNowhere(vmId, 87);

  await fx.cluster.client.workflow.getHandle(workflowId).cancel();

  const result = await endedWithin(workflowId, 10_000);
  expect(result).toMatchObject({ outcome: 'cancelled', runningOn: 'h1', rounds: [] });
  expect(await runningCopies(fx, vmId)).toEqual(['h1']);
  expect(await vmmCall(fx.cluster, 'h1', vmId, 'verify')).toMatchObject({ badPages: 0 });
  await fx.ferry.destroyVm('h1', vmId);
});
