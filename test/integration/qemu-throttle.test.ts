/**
 * The throttle on a QEMU guest whose program rewrites its hot set faster than pages leave: without a
 * throttle the migration gives up and leaves the guest as it was; with sdps (QEMU's vCPU stopped for
 * slices of every 100 ms, see vmm/qemu/qemu-vcpu.ts) it converges, and what the guest lost is
 * measured twice: by ferry from the vCPU's scheduled and descheduled time, and from the guest
 * program's own heartbeats (bytes it wrote per second before and during the migration). The
 * migrated memory is compared byte for byte at resume. Skips only where QEMU cannot be installed.
 */
import type { VmmStatus } from '../../vmm/vmm-methods';
import { endedResult, runningCopies, useCluster, vmmCall } from './support/cluster-fixture';
import {
  expectRamEqual,
  guestStatus,
  MiB,
  QEMU_BUDGET_SEC_PER_GIB,
  qemuTestOrSkip,
  until,
} from './support/qemu-cluster';

jest.setTimeout(300_000);

const qemuTest = qemuTestOrSkip('the QEMU throttle test');

const fx = useCluster();

function status(hostId: string, vmId: string): Promise<VmmStatus> {
  return guestStatus(fx, hostId, vmId);
}

/** A 128 MiB guest rewriting a 32 MiB hot set at 500 MB/s; resolves with two heartbeats 2 s apart. */
async function bootBusyGuest(vmId: string): Promise<{ first: VmmStatus; second: VmmStatus }> {
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 128 * MiB,
    workload: { type: 'hotset', rateBytesPerSec: 500e6, hotSetBytes: 32 * MiB },
    driver: 'qemu',
  });
  const first = await until('a heartbeat', async () => {
    const s = await status('h1', vmId);
    return (s.guest?.seq ?? -1) >= 1 ? s : undefined;
  });
  const second = await until('a heartbeat 2 s later', async () => {
    const s = await status('h1', vmId);
    return (s.guest?.seq ?? 0) >= (first.guest?.seq ?? 0) + 20 ? s : undefined;
  });
  return { first, second };
}

/** Bytes per second the guest program wrote between two of its heartbeats. */
function guestWriteRate(from: VmmStatus, to: VmmStatus, seconds: number): number {
  return ((to.guest?.writtenBytes ?? 0) - (from.guest?.writtenBytes ?? 0)) / seconds;
}

qemuTest(
  'a QEMU guest outrunning the stream: none gives up and leaves it running, sdps converges and the work it cost is measured from the guest',
  async () => {
    await bootBusyGuest('qemu-busy-none');
    const none = await endedResult(
      fx,
      await fx.ferry.startMigration({
        vmId: 'qemu-busy-none',
        sourceHost: 'h1',
        destinationHost: 'h2',
        policy: { throttle: 'none', downtimeLimitMs: 50, maxRounds: 6 },
      }),
    );
    expect(none.outcome).toBe('aborted');
    expect(none.reason).toMatch(/did not converge in 6 rounds/);
    expect(await runningCopies(fx, 'qemu-busy-none')).toEqual(['h1']);
    expect((await status('h1', 'qemu-busy-none')).vcpu.throttlePercent).toBe(0);
    await fx.ferry.destroyVm('h1', 'qemu-busy-none');

    const vmId = 'qemu-busy-sdps';
    const { first, second } = await bootBusyGuest(vmId);
    const before = guestWriteRate(first, second, (second.guest!.seq - first.guest!.seq) / 10);
    const startedAt = await status('h1', vmId);
    const result = await endedResult(
      fx,
      await fx.ferry.startMigration({
        vmId,
        sourceHost: 'h1',
        destinationHost: 'h2',
        // TCG guests are slow on a loaded machine: the budget is generous, so only a real failure ends it.
        policy: {
          downtimeLimitMs: 50,
          // sdps stops raising the throttle once the guest dirties slower than pages leave; on a
          // loaded machine the rounds that follow may need long to fall under 50 ms.
          maxRounds: 200,
          keepSourceAfterSwitchover: true,
          completionBudgetSecPerGiB: QEMU_BUDGET_SEC_PER_GIB,
        },
      }),
    );
    console.log(
      `QEMU sdps rounds: ${result.rounds
        .map(
          (r) =>
            `${r.round}:${r.throttlePercent.toFixed(0)}%/${(r.dirtyRateBytesPerSec / 1e6).toFixed(0)}MB/s/${r.durationMs.toFixed(0)}ms`,
        )
        .join(' ')}; ${result.reason ?? ''}`,
    );
    expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
    const t = result.throttle;
    expect(t?.policy).toBe('sdps');
    expect(t?.maxPercent).toBeGreaterThan(0);
    expect(t?.throttledMs).toBeGreaterThan(0);
    expect(result.rounds[0]?.throttlePercent).toBe(0);
    expect(Math.max(...result.rounds.map((r) => r.throttlePercent))).toBeGreaterThan(0);

    // From the guest's own heartbeats (each ~100 ms of guest time): what it wrote per second of
    // wall time during the migration, against before. The stunned source holds the last one.
    const atStun = await status('h1', vmId);
    const during = guestWriteRate(startedAt, atStun, result.totalMs / 1000);
    const lostByGuest = 1 - during / before;
    console.log(
      `QEMU sdps: ${result.rounds.length} rounds, max throttle ${t?.maxPercent}%, downtime ${result.downtimeMs.toFixed(1)} ms; ` +
        `guest wrote ${(before / 1e6).toFixed(0)} MB/s before, ${(during / 1e6).toFixed(0)} MB/s during: ` +
        `work lost ${(lostByGuest * 100).toFixed(0)}% by the heartbeats, ${((t?.workLostShare ?? 0) * 100).toFixed(0)}% by ferry`,
    );
    expect(lostByGuest).toBeGreaterThan(0);
    expect(lostByGuest).toBeLessThan(1);
    expect(t?.workLostShare).toBeGreaterThan(0);
    expect(t?.workLostShare).toBeLessThan(1);

    await expectRamEqual(fx, vmId, 'h1', 'h2');
    // The destination runs unthrottled, and its guest program finds its memory intact.
    expect((await status('h2', vmId)).vcpu).toMatchObject({ state: 'running', throttlePercent: 0 });
    expect(await vmmCall(fx.cluster, 'h2', vmId, 'verify')).toMatchObject({ badPages: 0 });
    await fx.ferry.destroyVm('h1', vmId);
    await fx.ferry.destroyVm('h2', vmId);
  },
);
