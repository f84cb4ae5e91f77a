/**
 * Robustness with a QEMU guest, real processes killed with real signals: the guarantees the
 * simulated guest has (one running copy, nothing lost, the source untouched by a failed or
 * cancelled migration) hold for a Linux guest in QEMU too. Every completed migration ends with the
 * stunned source's RAM and the destination's RAM at resume compared byte for byte, and the guest
 * program checking all its memory again where it runs. Skips only where QEMU cannot be installed.
 */
import { CONTROL_TASK_QUEUE } from '../../temporal-config';
import type { VmmStatus } from '../../vmm/vmm-methods';
import type { MigrateVmInput, MigrationResult } from '../../workflows/types';
import { endedResult, engineCall, pagesFlowing, runningCopies, useCluster, vmmCall } from './support/cluster-fixture';
import {
  expectRamEqual,
  guestStatus,
  MiB,
  QEMU_BUDGET_SEC_PER_GIB,
  qemuTestOrSkip,
  until,
} from './support/qemu-cluster';

jest.setTimeout(240_000);

const qemuTest = qemuTestOrSkip('the QEMU robustness tests');

const fx = useCluster();

function status(hostId: string, vmId: string): Promise<VmmStatus> {
  return guestStatus(fx, hostId, vmId);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Boots a 128 MiB QEMU guest on h1 whose program rewrites a 16 MiB hot set; resolves once it beats. */
async function bootGuest(vmId: string): Promise<VmmStatus> {
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 128 * MiB,
    workload: { type: 'hotset', rateBytesPerSec: 20e6, hotSetBytes: 16 * MiB },
    driver: 'qemu',
  });
  return until('the guest program to beat', async () => {
    const s = await status('h1', vmId);
    return (s.guest?.seq ?? -1) >= 1 ? s : undefined;
  });
}

/** The guest runs on `hostId` alone, and its program checks all its memory again without a bad page. */
async function expectGuestRunsIntactOn(vmId: string, hostId: string): Promise<void> {
  expect(await runningCopies(fx, vmId)).toEqual([hostId]);
  expect(await vmmCall(fx.cluster, hostId, vmId, 'verify')).toMatchObject({ badPages: 0 });
  expect((await status(hostId, vmId)).guest).toMatchObject({ state: 'ok', bad: 0 });
}

/**
 * A migration that did not complete left nothing on h2, and the guest runs on at h1, intact, its
 * program past where it was `before`.
 */
async function expectRunsOnAtSource(vmId: string, before: VmmStatus['guest']): Promise<void> {
  const [listing] = await fx.ferry.listVms(['h2']);
  expect((listing?.vms ?? []).map((vm) => vm.vmId)).not.toContain(vmId);
  await expectGuestRunsIntactOn(vmId, 'h1');
  expect((await status('h1', vmId)).guest?.seq).toBeGreaterThan(before?.seq ?? Infinity);
}

/** A completed migration to h2: one copy, RAM equal byte for byte at resume, the guest program intact. */
async function expectMigratedExactly(vmId: string, result: MigrationResult): Promise<void> {
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.destinationDigest).toBe(result.sourceDigest);
  await expectRamEqual(fx, vmId, 'h1', 'h2');
  await expectGuestRunsIntactOn(vmId, 'h2');
}

async function destroyEverywhere(vmId: string): Promise<void> {
  for (const host of fx.cluster.hosts) await fx.ferry.destroyVm(host, vmId);
}

/**
 * Resolves once the migration of `vmId` to `destinationHost` is in its switchover, with the
 * destination held 3 s when it is asked to finish (so what the test does next lands in the
 * switchover). Throws if the migration ends first.
 */
async function intoHeldSwitchover(vmId: string, workflowId: string, destinationHost: string): Promise<void> {
  await pagesFlowing(fx.cluster, vmId, workflowId, destinationHost);
  await engineCall(fx.cluster, destinationHost, vmId, 'migration.armFault', {
    point: 'destination.final',
    action: 'delay',
    delayMs: 3_000,
  });
  for (let phase = ''; phase !== 'switchover';) {
    phase = (await fx.ferry.progress(workflowId)).phase;
    if (['completed', 'failed', 'rolled-back', 'cancelled'].includes(phase))
      throw new Error(`the migration ended (${phase}) before its switchover`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startMigration(vmId: string): Promise<string> {
  return fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    // TCG guests are slow on a loaded machine: the budget is generous, so only a real failure ends it.
    policy: { keepSourceAfterSwitchover: true, completionBudgetSecPerGiB: QEMU_BUDGET_SEC_PER_GIB },
  });
}

qemuTest('the VMM process SIGKILLed: its QEMU dies with it, so no guest runs unowned', async () => {
  const vmId = 'qemu-vmm-killed';
  const running = await bootGuest(vmId);
  const qemuPid = running.hypervisorPid as number;
  expect(alive(qemuPid)).toBe(true);
  process.kill(running.pid, 'SIGKILL');
  await until('QEMU to exit', async () => (alive(qemuPid) ? undefined : true), 10_000);
  expect(await runningCopies(fx, vmId)).toEqual([]);
  await destroyEverywhere(vmId);
});

qemuTest(
  'nats-server killed mid pre-copy and not restarted: the QEMU guest migrates through the page file',
  async () => {
    const vmId = 'qemu-nats-dies';
    await bootGuest(vmId);
    const workflowId = await startMigration(vmId);
    try {
      await pagesFlowing(fx.cluster, vmId, workflowId);
      fx.cluster.nats.kill('SIGKILL');
      const result = await fx.ferry.result(workflowId);
      expect(result.bytesViaStore).toBeGreaterThan(0);
      await expectMigratedExactly(vmId, result);
    } finally {
      await fx.cluster.nats.restart();
    }
    await destroyEverywhere(vmId);
  },
);

qemuTest(
  'the destination host agent killed with SIGKILL mid pre-copy and restarted: the QEMU guest migrates',
  async () => {
    const vmId = 'qemu-agent-dies';
    await bootGuest(vmId);
    const workflowId = await startMigration(vmId);
    await pagesFlowing(fx.cluster, vmId, workflowId);
    await fx.cluster.killWorker('host-h2');
    await fx.cluster.restartWorker('host-h2');
    await expectMigratedExactly(vmId, await fx.ferry.result(workflowId));
    await destroyEverywhere(vmId);
  },
);

qemuTest(
  'cancelled in prepare and in pre-copy: the QEMU guest runs on at the source, untouched, and nothing stays on h2',
  async () => {
    const vmId = 'qemu-cancelled';
    await bootGuest(vmId);
    const input: MigrateVmInput = { vmId, sourceHost: 'h1', destinationHost: 'h2' };
    // Signal-with-start delivers the cancel with the workflow's first task, before prepare ends.
    const inPrepare = await fx.cluster.client.workflow.signalWithStart('migrateVm', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: `qemu-cancel-prepare-${Date.now()}`,
      args: [input],
      signal: 'cancel',
      signalArgs: [{ reason: 'test cancels in prepare' }],
    });
    const inPrepareResult = await endedResult(fx, inPrepare.workflowId);
    expect(inPrepareResult).toMatchObject({ outcome: 'cancelled', runningOn: 'h1', rounds: [] });

    const before = (await status('h1', vmId)).guest;
    const inPrecopy = await startMigration(vmId);
    await pagesFlowing(fx.cluster, vmId, inPrecopy);
    await fx.ferry.cancel(inPrecopy, 'test cancels in pre-copy');
    expect(await endedResult(fx, inPrecopy)).toMatchObject({ outcome: 'cancelled', runningOn: 'h1' });
    await expectRunsOnAtSource(vmId, before);
    await destroyEverywhere(vmId);
  },
);

qemuTest(
  "a downtime limit shorter than the stun's scan of the guest's memory: given up after two rounds, saying so, and the guest runs on at the source",
  async () => {
    const vmId = 'qemu-limit-too-short';
    await bootGuest(vmId);
    const before = (await status('h1', vmId)).guest;
    // Comparing 128 MiB of RAM file takes milliseconds however quiet the guest: 1 ms cannot be kept.
    const workflowId = await fx.ferry.startMigration({
      vmId,
      sourceHost: 'h1',
      destinationHost: 'h2',
      policy: { downtimeLimitMs: 1, completionBudgetSecPerGiB: QEMU_BUDGET_SEC_PER_GIB },
    });
    const result = await endedResult(fx, workflowId);
    expect(result).toMatchObject({ outcome: 'aborted', runningOn: 'h1', forcedSwitchover: false });
    expect(result.reason).toMatch(
      /^cannot meet the downtime limit: finding the last dirty pages at the stun alone takes \d+ ms \(2 rounds in a row\)/,
    );
    expect(result.rounds).toHaveLength(2);
    for (const r of result.rounds) expect(r.stunScanMs).toBeGreaterThanOrEqual(1);
    await expectRunsOnAtSource(vmId, before);
    await destroyEverywhere(vmId);
  },
);

qemuTest(
  'cancelled in the switchover: a cancel signal is too late and the QEMU guest arrives exactly; a Temporal cancellation leaves one copy, intact',
  async () => {
    const vmId = 'qemu-cancel-in-switchover';
    await bootGuest(vmId);
    const signalled = await startMigration(vmId);
    await intoHeldSwitchover(vmId, signalled, 'h2');
    await fx.ferry.cancel(signalled, 'test cancels in the switchover');
    await expectMigratedExactly(vmId, await endedResult(fx, signalled));

    await fx.ferry.destroyVm('h1', vmId);
    const cancelled = await fx.ferry.startMigration({
      vmId,
      sourceHost: 'h2',
      destinationHost: 'h1',
      policy: { completionBudgetSecPerGiB: QEMU_BUDGET_SEC_PER_GIB },
    });
    await intoHeldSwitchover(vmId, cancelled, 'h1');
    await fx.cluster.client.workflow.getHandle(cancelled).cancel();
    const result = await endedResult(fx, cancelled);
    // The source and the destination race for the ownership epoch; whichever won runs, alone.
    expect(['h1', 'h2']).toContain(result.runningOn);
    // Where it completed, the destination checked every page's content against the source's first.
    if (result.runningOn === 'h1') expect(result).toMatchObject({ outcome: 'completed', verified: true });
    await expectGuestRunsIntactOn(vmId, result.runningOn as string);
    await destroyEverywhere(vmId);
  },
);

qemuTest(
  "the destination's QEMU killed before it resumes: the source resumes, one copy, its guest intact",
  async () => {
    const vmId = 'qemu-destination-dies';
    await bootGuest(vmId);
    const workflowId = await startMigration(vmId);
    // Its QEMU is killed inside the switchover, while the destination is held.
    await intoHeldSwitchover(vmId, workflowId, 'h2');
    process.kill((await status('h2', vmId)).hypervisorPid as number, 'SIGKILL');
    const result = await endedResult(fx, workflowId);
    expect(result.outcome).not.toBe('completed');
    expect(result.runningOn).toBe('h1');
    await expectGuestRunsIntactOn(vmId, 'h1');
    await destroyEverywhere(vmId);
  },
);
