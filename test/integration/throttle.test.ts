/**
 * The vCPU throttle on real services (Temporal dev server, nats-server, host agents, VMM
 * processes): a guest that dirties its hot set faster than pages leave does not converge without a
 * throttle and does with sdps; updates pin the throttle and change the downtime limit of a running
 * migration, and refuse bad values; a migration that ends without a handover leaves its guest
 * unthrottled; `history` starts the VM's next migration from what its last one recorded. Every
 * completed migration is checked page by page.
 */
import { resolveBinary } from '../../infra/binaries';
import { compareMigratedMemory } from '../../verification';
import type { MigrationOptions } from '../../workflows/policy';
import type { MigrationProgress, MigrationResult } from '../../workflows/types';
import { endedResult, expectSameMemory, useCluster, vmmCall } from './support/cluster-fixture';
import { FERRY_CLI, runCommand, type CommandOutput } from './support/run-cli';

jest.setTimeout(240_000);

const fx = useCluster();
const MiB = 2 ** 20;

/** A guest whose vCPU writes its 96 MiB hot set as fast as it can: faster than pages leave here. */
async function createBusyGuest(vmId: string, hostId = 'h1'): Promise<void> {
  await fx.ferry.createVm(hostId, {
    vmId,
    memoryBytes: 256 * MiB,
    workload: { type: 'hotset', rateBytesPerSec: 1.5e9, hotSetBytes: 96 * MiB },
    seed: vmId.length,
  });
}

function start(vmId: string, policy: MigrationOptions, from = 'h1', to = 'h2'): Promise<string> {
  return fx.ferry.startMigration({ vmId, sourceHost: from, destinationHost: to, policy });
}

async function vcpu(hostId: string, vmId: string): Promise<{ state: string; throttlePercent: number }> {
  return (await vmmCall<{ vcpu: { state: string; throttlePercent: number } }>(fx.cluster, hostId, vmId, 'status')).vcpu;
}

async function progressWhen(workflowId: string, ok: (p: MigrationProgress) => boolean): Promise<MigrationProgress> {
  for (let i = 0; i < 1_200; i += 1) {
    const p = await fx.ferry.progress(workflowId);
    if (ok(p)) return p;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`migration ${workflowId} never reached the expected progress`);
}

/** Asserts the source kept its guest: running, unthrottled, every page self-consistent. */
async function expectUntouchedSource(vmId: string): Promise<void> {
  expect(await vcpu('h1', vmId)).toEqual(expect.objectContaining({ state: 'running', throttlePercent: 0 }));
  expect(await vmmCall(fx.cluster, 'h1', vmId, 'verify')).toEqual(expect.objectContaining({ badPages: 0 }));
}

function run(command: string, args: string[]): Promise<CommandOutput> {
  return runCommand(command, args, { ...fx.cluster.processEnv, TEMPORAL_VERSION_CHECK_DISABLED: '1' });
}

function ferryCli(...args: string[]): Promise<CommandOutput> {
  return run(process.execPath, [FERRY_CLI, ...args]);
}

test('a guest dirtying faster than pages leave: none gives up and leaves it untouched, sdps converges', async () => {
  await createBusyGuest('busy-none');
  const none = await endedResult(fx, await start('busy-none', { throttle: 'none', downtimeLimitMs: 50, maxRounds: 6 }));
  expect(none.outcome).toBe('aborted');
  expect(none.reason).toMatch(/did not converge in 6 rounds/);
  expect(none.throttle).toEqual(expect.objectContaining({ policy: 'none', maxPercent: 0, throttledMs: 0 }));
  await expectUntouchedSource('busy-none');
  await fx.ferry.destroyVm('h1', 'busy-none');

  await createBusyGuest('busy-sdps');
  const result: MigrationResult = await fx.ferry.result(
    await start('busy-sdps', { downtimeLimitMs: 50, keepSourceAfterSwitchover: true }),
  );
  expect(result.outcome).toBe('completed');
  expect(result.downtimeMs).toBeLessThan(300);
  const t = result.throttle;
  expect(t?.policy).toBe('sdps');
  expect(t?.maxPercent).toBeGreaterThan(0);
  expect(t?.throttledMs).toBeGreaterThan(0);
  expect(t?.workLostShare).toBeGreaterThan(0);
  expect(t?.workLostShare).toBeLessThan(1);
  // Round 0 is never throttled; later rounds measured the throttle on the vCPU.
  expect(result.rounds[0]?.throttlePercent).toBe(0);
  expect(Math.max(...result.rounds.map((r) => r.throttlePercent))).toBeGreaterThan(0);
  expect(t?.timeline.length).toBeGreaterThan(0);
  await expectSameMemory(fx, 'busy-sdps');
  // The destination's guest runs at full speed.
  expect(await vcpu('h2', 'busy-sdps')).toEqual(expect.objectContaining({ state: 'running', throttlePercent: 0 }));
  await fx.ferry.destroyVm('h1', 'busy-sdps');
  await fx.ferry.destroyVm('h2', 'busy-sdps');
});

test('updates pin the throttle of a running migration and refuse bad values; a cancel lifts it', async () => {
  await createBusyGuest('pinned');
  const workflowId = await start('pinned', { downtimeLimitMs: 1, maxRounds: 1_000 });
  await progressWhen(workflowId, (p) => p.round >= 1);

  const refused = await ferryCli('throttle', 'pinned', '150');
  expect(refused.code).toBe(2);
  expect(refused.stderr).toMatch(/refused setThrottle: throttle percent must be a number from 0 to 99.*got 150/);
  await expect(fx.ferry.setDowntimeLimit(workflowId, 0)).rejects.toThrow(
    /refused setDowntimeLimit: downtimeLimitMs must be a positive integer, got 0/,
  );

  const pinned = await ferryCli('throttle', 'pinned', '30');
  expect(pinned.code).toBe(0);
  expect(pinned.stdout).toMatch(/throttle pinned at 30%/);
  expect((await vcpu('h1', 'pinned')).throttlePercent).toBe(30);
  // Later rounds keep it: the policy does not move a pinned throttle.
  const later = await progressWhen(workflowId, (p) => p.round >= 4);
  expect(later.throttlePercent).toBe(30);
  expect((await vcpu('h1', 'pinned')).throttlePercent).toBe(30);
  expect(await fx.ferry.setThrottle(workflowId, null)).toEqual({ throttlePercent: 30, pinned: false });

  await fx.ferry.cancel(workflowId, 'test cancels');
  const result = await endedResult(fx, workflowId);
  expect(result.outcome).toBe('cancelled');
  expect(result.throttle?.requests).toBe(1);
  expect(result.throttle?.timeline).toContainEqual(expect.objectContaining({ percent: 30, why: 'request' }));
  await expectUntouchedSource('pinned');
  await fx.ferry.destroyVm('h1', 'pinned');
});

test('a larger downtime limit set while it runs lets a migration that could not converge switch over', async () => {
  await createBusyGuest('relaxed');
  const workflowId = await start('relaxed', {
    throttle: 'none',
    downtimeLimitMs: 20,
    maxRounds: 1_000,
    keepSourceAfterSwitchover: true,
  });
  await progressWhen(workflowId, (p) => p.round >= 3);
  // From the temporal CLI, as an operator without ferry's would.
  const temporal = (...args: string[]) =>
    run(resolveBinary('temporal'), [
      'workflow',
      'update',
      'execute',
      '--address',
      fx.cluster.temporal.address,
      '--workflow-id',
      workflowId,
      ...args,
    ]);
  const refused = await temporal('--name', 'setDowntimeLimit', '--input', '{"downtimeLimitMs":-3}');
  expect(refused.code).not.toBe(0);
  expect(refused.stdout + refused.stderr).toMatch(/downtimeLimitMs must be a positive integer, got -3/);
  const answer = await temporal('--name', 'setDowntimeLimit', '--input', '{"downtimeLimitMs":5000}');
  expect(answer.code).toBe(0);
  expect(answer.stdout).toMatch(/5000/);
  const result = await fx.ferry.result(workflowId);
  expect(result.outcome).toBe('completed');
  expect(result.throttle?.maxPercent).toBe(0);
  await expectSameMemory(fx, 'relaxed');
  // Once the switchover has begun nothing can change any more.
  await expect(fx.ferry.setThrottle(workflowId, 10)).rejects.toThrow(/./);
  await fx.ferry.destroyVm('h1', 'relaxed');
  await fx.ferry.destroyVm('h2', 'relaxed');
});

test("history starts the VM's next migration from the throttle its last one converged under", async () => {
  await createBusyGuest('learner');
  const first = await fx.ferry.result(await start('learner', { downtimeLimitMs: 50, keepSourceAfterSwitchover: true }));
  expect(first.outcome).toBe('completed');
  await expectSameMemory(fx, 'learner');
  await fx.ferry.destroyVm('h1', 'learner');

  // Back from h2 to h1, with the record the first migration left on the store.
  const second = await fx.ferry.result(
    await start('learner', { throttle: 'history', downtimeLimitMs: 50, keepSourceAfterSwitchover: true }, 'h2', 'h1'),
  );
  expect(second.outcome).toBe('completed');
  expect(second.throttle?.history).toEqual(
    expect.objectContaining({ migrationId: first.migrationId, throttlePercent: first.throttle?.finalPercent }),
  );
  expect(second.throttle?.startPercent).toBe(first.throttle?.finalPercent);
  // Round 0 runs unthrottled; round 1 starts at the record at least.
  expect(second.rounds[0]?.throttlePercent).toBe(0);
  const learned = first.throttle?.finalPercent ?? 0;
  if (learned > 0) {
    const roundOne = second.throttle?.timeline.find((c) => c.round === 1 && c.why === 'round');
    expect(roundOne?.percent).toBeGreaterThanOrEqual(learned);
  }
  const check = await compareMigratedMemory(fx.ferry, {
    vmId: 'learner',
    sourceHost: 'h2',
    destinationHost: 'h1',
    dir: `${fx.cluster.env.stateDir}/dumps`,
  });
  expect(check.details).toEqual([]);
  expect(check.ok).toBe(true);
  await fx.ferry.destroyVm('h1', 'learner');
  await fx.ferry.destroyVm('h2', 'learner');
});
