/**
 * A migration to or from a host that no agent serves (an id nobody runs, or an agent that is down)
 * fails within a bounded time as HostUnavailable naming the host, before it touches anything: the
 * VM runs on at its source, unharmed, and migrates once the host is back. Migrations are started
 * with the `temporal` CLI, past ferry's own host check, as a user of the Temporal tools would. A
 * host agent that vanishes mid-migration cannot hold it either: every step that waits for it is
 * bounded, and what it could not do is an incident of the result.
 */
import type { WorkflowFailedError } from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import { resolveBinary } from '../../infra';
import { CONTROL_TASK_QUEUE, NAMESPACE, TIMEOUTS } from '../../temporal-config';
import type { MigrateVmInput, MigrationResult } from '../../workflows/types';
import { endedResult, migrateNewGuest, runningCopies, useCluster, vmmCall } from './support/cluster-fixture';
import { runCommand } from './support/run-cli';

jest.setTimeout(180_000);

const fx = useCluster();

/** How long a request for an unavailable host may take to fail: the ping's bound plus start-up slack. */
const FAILS_WITHIN_MS = TIMEOUTS.hostReachMs + 10_000;

const GUEST = {
  memoryBytes: 64 * 2 ** 20,
  workload: { type: 'hotset' as const, rateBytesPerSec: 5e6, hotSetBytes: 2 * 2 ** 20 },
};

/** Starts migrateVm with `temporal workflow start`, as the reporter did. */
async function startWithTemporalCli(workflowId: string, input: MigrateVmInput): Promise<void> {
  const out = await runCommand(
    resolveBinary('temporal'),
    [
      'workflow',
      'start',
      '--address',
      fx.cluster.temporal.address,
      '--namespace',
      NAMESPACE,
      '--type',
      'migrateVm',
      '--task-queue',
      CONTROL_TASK_QUEUE,
      '--workflow-id',
      workflowId,
      '--input',
      JSON.stringify(input),
    ],
    fx.cluster.processEnv,
  );
  expect(out).toMatchObject({ code: 0 });
}

/** The top-level failure of `workflowId`; fails the test if it does not end within `boundMs`. */
async function failureWithin(workflowId: string, boundMs: number): Promise<ApplicationFailure> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${workflowId} still running after ${boundMs} ms`)), boundMs);
  });
  try {
    const ended = fx.cluster.client.workflow
      .getHandle(workflowId)
      .result()
      .then(
        (result: unknown) => {
          throw new Error(`${workflowId} completed: ${JSON.stringify(result)}`);
        },
        (err: unknown) => (err as WorkflowFailedError).cause as ApplicationFailure,
      );
    return await Promise.race([ended, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The VM runs on h1 alone, every page intact, and no other host holds it. */
async function expectUntouchedOnH1(vmId: string): Promise<void> {
  expect(await runningCopies(fx, vmId)).toEqual(['h1']);
  expect(await vmmCall(fx.cluster, 'h1', vmId, 'verify')).toMatchObject({ badPages: 0 });
  const [listing] = await fx.ferry.listVms(['h2']);
  expect((listing?.vms ?? []).map((vm) => vm.vmId)).not.toContain(vmId);
}

test('a migration to a host nobody serves fails within seconds as HostUnavailable naming it; the VM runs on', async () => {
  const vmId = 'to-unknown-host';
  await fx.ferry.createVm('h1', { vmId, ...GUEST, seed: 91 });
  const workflowId = `unknown-destination-${Date.now()}`;

  await startWithTemporalCli(workflowId, { vmId, sourceHost: 'h1', destinationHost: 'h9' });
  const failure = await failureWithin(workflowId, FAILS_WITHIN_MS);

  expect(failure).toMatchObject({ name: 'ApplicationFailure', type: 'HostUnavailable', nonRetryable: true });
  expect(failure.message).toContain('host h9 is unavailable: no host agent picked up a task on ferry-host-h9');
  expect(failure.details?.[0]).toMatchObject({ outcome: 'failed', runningOn: 'h1', rounds: [] });
  await expectUntouchedOnH1(vmId);
  await fx.ferry.destroyVm('h1', vmId);
});

test('a migration from a host nobody serves fails as HostUnavailable naming it, touching neither host', async () => {
  const vmId = 'from-unknown-host';
  await fx.ferry.createVm('h1', { vmId, ...GUEST, seed: 92 });
  const workflowId = `unknown-source-${Date.now()}`;

  await startWithTemporalCli(workflowId, { vmId, sourceHost: 'h8', destinationHost: 'h2' });
  const failure = await failureWithin(workflowId, FAILS_WITHIN_MS);

  expect(failure).toMatchObject({ type: 'HostUnavailable' });
  expect(failure.message).toContain('host h8 is unavailable');
  expect(failure.message).not.toContain('host h2');
  await expectUntouchedOnH1(vmId);
  await fx.ferry.destroyVm('h1', vmId);
});

test('a migration to a host whose agent is down fails as HostUnavailable; once the agent is back it migrates', async () => {
  const vmId = 'to-down-host';
  await fx.ferry.createVm('h1', { vmId, ...GUEST, seed: 93 });
  await fx.cluster.killWorker('host-h2');
  const workflowId = `down-destination-${Date.now()}`;

  try {
    await startWithTemporalCli(workflowId, { vmId, sourceHost: 'h1', destinationHost: 'h2' });
    const failure = await failureWithin(workflowId, FAILS_WITHIN_MS);
    expect(failure).toMatchObject({ type: 'HostUnavailable' });
    expect(failure.message).toContain('host h2 is unavailable');
  } finally {
    await fx.cluster.restartWorker('host-h2');
  }
  await expectUntouchedOnH1(vmId);

  const again = await fx.ferry.startMigration({ vmId, sourceHost: 'h1', destinationHost: 'h2' });
  const result: MigrationResult = await fx.ferry.result(again);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(await runningCopies(fx, vmId)).toEqual(['h2']);
  await fx.ferry.destroyVm('h2', vmId);
});

test('a destination agent that vanishes mid pre-copy cannot hold the migration: its VMM takes the guest, and the result says so with what was left undone', async () => {
  const vmId = 'destination-agent-vanishes';
  const { workflowId } = await migrateNewGuest(fx, vmId, 94);
  await fx.cluster.killWorker('host-h2');

  let result: MigrationResult;
  try {
    // The receiver's heartbeat timeout and its retry's wait for an agent, then a bounded cleanup step.
    const bound = TIMEOUTS.heartbeatMs + TIMEOUTS.hostLostMs + TIMEOUTS.cleanupStepMs + 30_000;
    result = await Promise.race([
      endedResult(fx, workflowId),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`still running after ${bound} ms`)), bound)),
    ]);
  } finally {
    await fx.cluster.restartWorker('host-h2');
  }
  // The VMMs went on without the agent: the guest resumed on h2, which is what the result says.
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.incidents).toContainEqual(
    expect.objectContaining({
      at: 'cleanup',
      what: expect.stringContaining('the destination host h2 could not record'),
    }),
  );
  expect(await runningCopies(fx, vmId)).toEqual(['h2']);
  await fx.ferry.destroyVm('h2', vmId);
  await fx.ferry.destroyVm('h1', vmId);
});
