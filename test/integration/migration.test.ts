/**
 * End to end on real services: the Temporal dev server, nats-server, the orchestrator and two host
 * agents as processes, VMMs as processes, the page file in a real directory. Every migration ends
 * with the destination's memory compared with the source's page by page.
 */
import { WorkflowFailedError } from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import type { MigratedMemoryCheck } from '../../verification';
import { SimulatedDriver } from '../../vmm/driver';
import type { MigrationProgress, MigrationResult } from '../../workflows/types';

import { expectSameMemory, useCluster, vmmCall } from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster();

async function vcpuOf(hostId: string, vmId: string): Promise<{ state: string; pagesWritten: number }> {
  return (await vmmCall<{ vcpu: { state: string; pagesWritten: number } }>(fx.cluster, hostId, vmId, 'status')).vcpu;
}

async function verifyOn(hostId: string, vmId: string): Promise<{ badPages: number; checked: number }> {
  return vmmCall(fx.cluster, hostId, vmId, 'verify');
}

/** Waits until the guest on `hostId` writes more pages (it runs). */
async function expectRunning(hostId: string, vmId: string): Promise<void> {
  const before = (await vcpuOf(hostId, vmId)).pagesWritten;
  for (let i = 0; i < 100; i += 1) {
    const now = await vcpuOf(hostId, vmId);
    expect(now.state).toBe('running');
    if (now.pagesWritten > before) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`guest ${vmId} on ${hostId} wrote nothing in 2 s`);
}

/** Compares the stunned source's memory with the destination's page by page, then removes the source. */
async function compareAfterMigration(vmId: string): Promise<MigratedMemoryCheck> {
  const check = await expectSameMemory(fx, vmId);
  expect(check.sourceState).toBe('paused');
  expect(check.identical + check.rewrittenAfterResume).toBe(check.pages);
  await fx.ferry.destroyVm('h1', vmId);
  return check;
}

test('migrates a running guest with a hot-set workload from h1 to h2, memory equal page by page', async () => {
  const vmId = 'hot-guest';
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 64 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 20e6, hotSetBytes: 8 * 2 ** 20 },
    seed: 7,
  });
  await expectRunning('h1', vmId);

  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true },
  });
  const result: MigrationResult = await fx.ferry.result(workflowId);

  expect(result.outcome).toBe('completed');
  expect(result.runningOn).toBe('h2');
  expect(result.verified).toBe(true);
  expect(result.destinationDigest).toBe(result.sourceDigest);
  expect(result.rounds.length).toBeGreaterThanOrEqual(1);
  expect(result.rounds[0]?.pagesSent).toBe(16384);
  expect(result.downtimeMs).toBeGreaterThan(0);
  expect(result.downtimeMs).toBeLessThan(300);
  await expectRunning('h2', vmId);
  await compareAfterMigration(vmId);
  expect((await verifyOn('h2', vmId)).badPages).toBe(0);
});

test('migrates an idle guest: every page arrives identical', async () => {
  const vmId = 'idle-guest';
  await fx.ferry.createVm('h1', { vmId, memoryBytes: 32 * 2 ** 20, workload: { type: 'idle' }, seed: 3 });
  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true },
  });
  const result = await fx.ferry.result(workflowId);
  expect(result.outcome).toBe('completed');
  expect(result.rounds).toHaveLength(1);
  expect(result.rounds[0]?.dirtyPages).toBe(0);
  const check = await compareAfterMigration(vmId);
  expect(check.identical).toBe(check.pages);
});

test('cancel during pre-copy rolls back: the source keeps running with intact memory, the destination holds nothing', async () => {
  const vmId = 'busy-guest';
  // Dirtying 64 MiB at a high rate with a 1 ms downtime limit never converges on its own.
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 64 * 2 ** 20,
    workload: { type: 'random', rateBytesPerSec: 200e6 },
    seed: 11,
  });
  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { downtimeLimitMs: 1, maxRounds: 1_000 },
  });
  let progress: MigrationProgress | undefined;
  for (let i = 0; i < 600; i += 1) {
    progress = await fx.ferry.progress(workflowId);
    if (progress.round >= 2) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(progress?.phase).toBe('pre-copy');
  await fx.ferry.cancel(workflowId, 'test cancels');

  const failure = await fx.cluster.client.workflow
    .getHandle(workflowId)
    .result()
    .catch((err: unknown) => err);
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  const cause = (failure as WorkflowFailedError).cause as ApplicationFailure;
  expect(cause.type).toBe('MigrationCancelled');
  expect((cause.details?.[0] as MigrationResult).runningOn).toBe('h1');

  await expectRunning('h1', vmId);
  expect(await verifyOn('h1', vmId)).toEqual(expect.objectContaining({ badPages: 0 }));
  expect(await new SimulatedDriver({ hostId: 'h2', stateDir: fx.cluster.env.stateDir }).getVm(vmId)).toBeUndefined();

  // The same VM migrates again afterwards, once its guest calms down enough to converge.
  await vmmCall(fx.cluster, 'h1', vmId, 'setWorkload', {
    workload: { type: 'hotset', rateBytesPerSec: 5e6, hotSetBytes: 2 ** 20 },
  });
  const again = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true },
  });
  expect(again).toBe(workflowId);
  expect(await fx.ferry.result(again)).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  await compareAfterMigration(vmId);
  await fx.ferry.destroyVm('h2', vmId);
});

test('a second migration of the same VM under another workflow id is refused and the first one is untouched', async () => {
  const vmId = 'contested-guest';
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 64 * 2 ** 20,
    workload: { type: 'random', rateBytesPerSec: 200e6 },
    seed: 13,
  });
  const first = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { downtimeLimitMs: 1, maxRounds: 1_000 },
  });
  for (let i = 0; i < 600 && (await fx.ferry.progress(first)).round < 1; i += 1)
    await new Promise((r) => setTimeout(r, 25));

  const second = await fx.cluster.client.workflow.start('migrateVm', {
    taskQueue: 'ferry-control',
    workflowId: `other-${vmId}`,
    args: [{ vmId, sourceHost: 'h1', destinationHost: 'h2' }],
  });
  const failure = await second.result().catch((err: unknown) => err);
  expect(failure).toBeInstanceOf(WorkflowFailedError);
  expect(String((failure as WorkflowFailedError).cause?.message)).toContain(
    `VM ${vmId} is already being migrated by ${first}`,
  );

  expect((await fx.ferry.progress(first)).phase).toBe('pre-copy');
  await fx.ferry.cancel(first, 'test done');
  await fx.ferry.result(first).catch(() => undefined);
  await expectRunning('h1', vmId);
  expect(await verifyOn('h1', vmId)).toEqual(expect.objectContaining({ badPages: 0 }));
  await fx.ferry.destroyVm('h1', vmId);
});
