/**
 * The throttle policies' decisions, round by round: migrateVm against the time-skipping test
 * server, both hosts simulated by a hot-set guest that slows down under the throttle each round is
 * sent with (support/throttle-sim.ts), so what a policy decides changes what the next round sees.
 */
import type { WorkflowHandle } from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import type { RoundThrottleInput } from '../../model/protocol';
import type { VmHistoryRecord } from '../../store/vm-history';
import { CONTROL_TASK_QUEUE } from '../../temporal-config';
import { migrateVm, progressQuery } from '../../workflows';
import { setDowntimeLimitUpdate, setThrottleUpdate } from '../../workflows/migrate-vm';
import type { MigrationOptions } from '../../workflows/policy';
import { SDPS_ENGAGE_RATIO, sdpsTargetPercent } from '../../workflows/throttle-policy';
import type { MigrationResult, RoundSummary } from '../../workflows/types';
import { type HotSetGuest, PAGE_BYTES, SIM_STORE, simulateHosts } from './support/throttle-sim';
import {
  failureOf,
  gate,
  useTimeSkipping,
  withWorkers as runWorkers,
  type FakeHost,
  type FakeHosts,
  type Gate,
} from './support/time-skipping';

jest.setTimeout(120_000);

/** 64 MiB, a hot set of half of it, 10,000 pages/s sent: the 300 ms limit allows 3,000 pending pages. */
const GUEST: Omit<HotSetGuest, 'writePagesPerSec'> = {
  memoryPages: 16_384,
  hotSetPages: 8_192,
  sendPagesPerSec: 10_000,
};
/** Writes twice as fast as pages leave: unthrottled, ~6,500 pages stay pending for ever. */
const HOT: HotSetGuest = { ...GUEST, writePagesPerSec: 20_000 };
/** Writes at half the send rate: converges on its own. */
const COOL: HotSetGuest = { ...GUEST, writePagesPerSec: 5_000 };
/** Large enough that only maxRounds ends a migration that does not converge. */
const NO_BUDGET: MigrationOptions = { completionBudgetSecPerGiB: 100_000 };

type Hosts = FakeHosts;

/** The throttle each round was sent with, in order. */
function sentThrottles(host: FakeHost): RoundThrottleInput[] {
  return host.sendRound.mock.calls.map(([input]) => input.throttle as RoundThrottleInput);
}

function percents(host: FakeHost): number[] {
  return sentThrottles(host).map((t) => t.percent);
}

/** Expected downtime of a switchover after `round` (ms). */
function expectedDowntimeAfter(round: RoundSummary): number {
  return ((round.dirtyPages * PAGE_BYTES) / round.throughputBytesPerSec) * 1000;
}

describe('throttle policies against a guest that dirties its hot set', () => {
  const ts = useTimeSkipping();
  let nextId = 0;

  /** Runs `fn` while the orchestrator and both hosts serve; opens `gates` when it ends, however it ends. */
  function withWorkers<T>(hosts: Hosts, fn: () => Promise<T>, gates: Gate[] = []): Promise<T> {
    return runWorkers(ts, hosts, () => fn().finally(() => gates.forEach((g) => g.open())));
  }

  function start(
    name: string,
    policy: MigrationOptions,
    from = 'h1',
    to = 'h2',
  ): Promise<WorkflowHandle<typeof migrateVm>> {
    nextId += 1;
    return ts.env.client.workflow.start(migrateVm, {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: `throttle-${name}-${nextId}-${Date.now()}`,
      args: [{ vmId: 'vm-7', sourceHost: from, destinationHost: to, policy: { ...NO_BUDGET, ...policy } }],
    });
  }

  /**
   * How an update that should be rejected ended: the error's name and its cause's message, or
   * `accepted` and the answer. Never throws, so that a test goes on to open its gates.
   */
  async function rejection(update: Promise<unknown>): Promise<{ name: string; message: string }> {
    return update.then(
      (value) => ({ name: 'accepted', message: JSON.stringify(value) }),
      (error: Error & { cause?: Error }) => ({ name: error.name, message: error.cause?.message ?? error.message }),
    );
  }

  /** Rejected by the workflow's validator, saying `why`. */
  function rejectedFor(why: string): { name: string; message: string } {
    return { name: 'WorkflowUpdateFailedError', message: expect.stringContaining(why) as string };
  }

  it('none never throttles a guest that dirties twice as fast as pages leave, and aborts after maxRounds', async () => {
    const hosts = simulateHosts(HOT);

    const error = await withWorkers(hosts, async () =>
      failureOf(await start('none', { throttle: 'none', maxRounds: 12 })),
    );

    expect(error.cause).toMatchObject({ type: 'MigrationAborted' });
    expect(error.cause?.message).toContain('did not converge in 12 rounds');
    expect(sentThrottles(hosts.h1)).toHaveLength(12);
    expect(sentThrottles(hosts.h1)).toEqual(Array(12).fill({ policy: 'none', percent: 0, adjustWithinRound: false }));
    const details = (error.cause as ApplicationFailure).details?.[0] as MigrationResult;
    expect(details.rounds.map((r) => r.throttlePercent)).toEqual(Array(12).fill(0));
    expect(details.throttle).toMatchObject({ policy: 'none', maxPercent: 0, workLostShare: 0 });
    expect(hosts.h1.switchover).not.toHaveBeenCalled();
  });

  it('sdps engages after the first round that sends too slowly, raises the throttle toward its target and converges', async () => {
    const hosts = simulateHosts(HOT);

    const result = await withWorkers(hosts, async () => (await start('sdps', { throttle: 'sdps' })).result());

    expect(result).toMatchObject({ outcome: 'completed', forcedSwitchover: false, runningOn: 'h2' });
    expect(hosts.h1.switchover).toHaveBeenCalledTimes(1);
    const sent = percents(hosts.h1);
    const rounds = result.rounds;
    const engagedAfter = rounds.findIndex((r) => r.throughputBytesPerSec < SDPS_ENGAGE_RATIO * r.dirtyRateBytesPerSec);
    expect(engagedAfter).toBeGreaterThan(0);
    expect(sent.slice(0, engagedAfter + 1)).toEqual(Array(engagedAfter + 1).fill(0));
    expect(sent[engagedAfter + 1]).toBeGreaterThan(0);
    // From then on each round moves from its throttle toward the one the round before called for.
    for (let i = engagedAfter + 1; i < sent.length; i += 1) {
      const before = rounds[i - 1] as RoundSummary;
      const target = sdpsTargetPercent({
        sendRateBytesPerSec: before.throughputBytesPerSec,
        dirtyRateBytesPerSec: before.dirtyRateBytesPerSec,
        throttlePercent: before.throttlePercent,
      });
      expect(target).toBeGreaterThan(sent[i - 1] as number);
      expect(sent[i]).toBeGreaterThan(sent[i - 1] as number);
      expect(sent[i]).toBeLessThanOrEqual(target);
    }
    const last = rounds[rounds.length - 1] as RoundSummary;
    expect(last.dirtyRateBytesPerSec).toBeLessThan(last.throughputBytesPerSec);
    expect(expectedDowntimeAfter(last)).toBeLessThanOrEqual(300);
    expect(sentThrottles(hosts.h1).every((t) => t.policy === 'sdps' && t.adjustWithinRound)).toBe(true);
    const summary = result.throttle;
    expect(summary).toMatchObject({ policy: 'sdps', startPercent: 0, finalPercent: sent[sent.length - 1] });
    expect(summary?.maxPercent).toBeGreaterThan(0);
    expect(summary?.workLostShare).toBeGreaterThan(0);
    expect(summary?.workLostShare).toBeLessThan(1);
  });

  it('sdps never throttles a guest that dirties at half the send rate, which converges on its own', async () => {
    const hosts = simulateHosts(COOL);

    const result = await withWorkers(hosts, async () => (await start('sdps-cool', { throttle: 'sdps' })).result());

    expect(result).toMatchObject({ outcome: 'completed', forcedSwitchover: false });
    expect(result.rounds.length).toBeGreaterThan(2);
    expect(percents(hosts.h1)).toEqual(Array(result.rounds.length).fill(0));
    expect(result.throttle).toMatchObject({ policy: 'sdps', maxPercent: 0, finalPercent: 0, workLostShare: 0 });
  });

  it("auto-converge follows QEMU's law: 20% on the second round that dirtied over half of what it sent, then +10", async () => {
    const hosts = simulateHosts(HOT);

    const result = await withWorkers(hosts, async () => (await start('auto', { throttle: 'auto-converge' })).result());

    expect(result).toMatchObject({ outcome: 'completed', forcedSwitchover: false });
    const expected = [0];
    let throttle = 0;
    let counted = 0;
    for (const r of result.rounds.slice(0, -1)) {
      if (r.dirtyRateBytesPerSec > 0.5 * r.throughputBytesPerSec) counted += 1;
      if (counted === 2) {
        throttle = throttle === 0 ? 20 : Math.min(99, throttle + 10);
        counted = 0;
      }
      expected.push(throttle);
    }
    const sent = percents(hosts.h1);
    expect(sent).toEqual(expected);
    expect(Math.max(...sent)).toBeGreaterThanOrEqual(30);
    sent.slice(1).forEach((p, i) => expect(p).toBeGreaterThanOrEqual(sent[i] as number));
    expect(sentThrottles(hosts.h1).every((t) => t.policy === 'auto-converge' && !t.adjustWithinRound)).toBe(true);
    expect(result.throttle).toMatchObject({ policy: 'auto-converge', finalPercent: sent[sent.length - 1] });
  });

  it('history starts round 1 from the recorded throttle, or from 0 without a record, and records the converged one on the destination', async () => {
    const recorded: VmHistoryRecord = {
      vmId: 'vm-7',
      migrationId: 'an-earlier-one',
      at: '2024-01-01T00:00:00.000Z',
      sourceHost: 'h2',
      destinationHost: 'h1',
      policy: 'sdps',
      throttlePercent: 55,
      maxThrottlePercent: 60,
      rounds: 5,
      sendRateBytesPerSec: 1,
      dirtyRateBytesPerSec: 1,
    };
    // The cool guest needs less than the record's 55%, so its last throttle is not its highest.
    for (const [previous, guest] of [
      [recorded, COOL],
      [undefined, HOT],
    ] as const) {
      const history = new Map(previous ? [['vm-7', previous]] : []);
      const hosts = simulateHosts(guest, { history });

      const result = await withWorkers(hosts, async () => (await start('history', { throttle: 'history' })).result());

      expect(hosts.h1.prepareSource).toHaveBeenCalledWith(expect.objectContaining({ readHistory: true }));
      // Round 0 runs unthrottled; the record sets where round 1 starts (the cool guest needs no more).
      expect(percents(hosts.h1)[0]).toBe(0);
      if (previous) expect(percents(hosts.h1)[1]).toBe(55);
      expect(result.throttle).toMatchObject({ policy: 'history', startPercent: previous ? 55 : 0 });
      expect(result.throttle?.history).toEqual(previous ? expect.objectContaining({ throttlePercent: 55 }) : null);
      expect(hosts.h1.recordVmHistory).not.toHaveBeenCalled();
      expect(hosts.h2.recordVmHistory).toHaveBeenCalledTimes(1);
      expect(hosts.h2.recordVmHistory).toHaveBeenCalledWith({
        store: SIM_STORE,
        record: expect.objectContaining({
          vmId: 'vm-7',
          migrationId: result.migrationId,
          policy: 'history',
          destinationHost: 'h2',
          throttlePercent: result.throttle?.finalPercent,
          maxThrottlePercent: result.throttle?.maxPercent,
          rounds: result.rounds.length,
        }),
      });
      expect(result.throttle?.finalPercent).toBe(percents(hosts.h1).at(-1));
      if (previous) expect(result.throttle?.finalPercent).toBeLessThan(55);
      expect(history.get('vm-7')?.migrationId).toBe(result.migrationId);
    }
  });

  it('history records nothing after a switchover that was forced', async () => {
    const history = new Map<string, VmHistoryRecord>();
    const hosts = simulateHosts(HOT, { history });

    const result = await withWorkers(hosts, async () =>
      (await start('history-forced', { throttle: 'history', maxRounds: 2, onGiveUp: 'force-switchover' })).result(),
    );

    expect(result).toMatchObject({ outcome: 'completed', forcedSwitchover: true, runningOn: 'h2' });
    expect(hosts.h1.recordVmHistory).not.toHaveBeenCalled();
    expect(hosts.h2.recordVmHistory).not.toHaveBeenCalled();
    expect(history.size).toBe(0);
  });

  it("history converges a VM's second migration in fewer rounds than its first, from what the first recorded", async () => {
    const history = new Map<string, VmHistoryRecord>();
    const there = simulateHosts(HOT, { history });
    const first = await withWorkers(there, async () => (await start('first', { throttle: 'history' })).result());
    const back = simulateHosts(HOT, { history });
    const second = await withWorkers(back, async () =>
      (await start('second', { throttle: 'history' }, 'h2', 'h1')).result(),
    );

    expect(first).toMatchObject({ outcome: 'completed', forcedSwitchover: false, runningOn: 'h2' });
    expect(second).toMatchObject({ outcome: 'completed', forcedSwitchover: false, runningOn: 'h1' });
    expect(percents(there.h1)[0]).toBe(0);
    expect(percents(back.h2)[0]).toBe(0);
    expect(percents(back.h2)[1]).toBeGreaterThanOrEqual(first.throttle?.finalPercent ?? Infinity);
    expect(first.throttle?.finalPercent).toBeGreaterThan(0);
    expect(second.rounds.length).toBeLessThan(first.rounds.length);
    expect(back.h1.recordVmHistory).toHaveBeenCalledTimes(1);
    expect(history.get('vm-7')).toMatchObject({
      migrationId: second.migrationId,
      throttlePercent: second.throttle?.finalPercent,
    });
  });

  it('setThrottle pins the throttle during pre-copy, rejects bad values without changing anything, and null hands it back', async () => {
    const [third, fourth] = [gate(), gate()];
    const hosts = simulateHosts(HOT, {
      beforeRound: (round) => (round === 2 ? third.pass() : round === 3 ? fourth.pass() : Promise.resolve()),
    });

    const seen = await withWorkers(hosts, async () => {
      const handle = await start('pin', { throttle: 'sdps' });
      await third.reached;
      const held = await handle.query(progressQuery);
      const pinned = await handle.executeUpdate(setThrottleUpdate, { args: [{ percent: 40 }] });
      const rejected: { name: string; message: string }[] = [];
      for (const percent of [150, -1, 'x'] as unknown as number[])
        rejected.push(await rejection(handle.executeUpdate(setThrottleUpdate, { args: [{ percent }] })));
      const afterRejected = await handle.query(progressQuery);
      third.open();
      await fourth.reached;
      const whilePinned = await handle.query(progressQuery);
      const handedBack = await handle.executeUpdate(setThrottleUpdate, { args: [{ percent: null }] });
      fourth.open();
      return { held, pinned, rejected, afterRejected, whilePinned, handedBack, result: await handle.result() };
    }, [third, fourth]);

    const sent = sentThrottles(hosts.h1);
    expect(sent[2]?.percent).toBeGreaterThan(0);
    expect(seen.held).toMatchObject({ phase: 'pre-copy', throttlePolicy: 'sdps', throttlePercent: sent[2]?.percent });
    expect(seen.pinned).toEqual({ throttlePercent: 40, pinned: true });
    expect(hosts.h1.setSourceThrottle).toHaveBeenCalledTimes(1);
    expect(hosts.h1.setSourceThrottle).toHaveBeenCalledWith({
      migrationId: seen.result.migrationId,
      vmId: 'vm-7',
      percent: 40,
    });
    expect(seen.rejected).toEqual([rejectedFor('got 150'), rejectedFor('got -1'), rejectedFor('got "x"')]);
    expect(seen.afterRejected.throttlePercent).toBe(40);
    expect(seen.whilePinned).toMatchObject({ throttlePolicy: 'sdps', throttlePercent: 40 });
    expect(sent[3]).toEqual({ policy: 'sdps', percent: 40, adjustWithinRound: false });
    expect(seen.handedBack).toEqual({ throttlePercent: 40, pinned: false });
    expect(sent.length).toBeGreaterThan(4);
    expect(sent.slice(4).every((t) => t.adjustWithinRound)).toBe(true);
    expect(seen.result).toMatchObject({ outcome: 'completed', forcedSwitchover: false });
    expect(seen.result.rounds[2]?.throttlePercent).toBe(40);
    expect(seen.result.throttle?.requests).toBe(1);
  });

  it('setDowntimeLimit lets a migration that would not converge under 300 ms switch over; both updates are refused once it has begun', async () => {
    const [fourth, switchover] = [gate(), gate()];
    const hosts = simulateHosts(HOT, {
      beforeRound: (round) => (round === 3 ? fourth.pass() : Promise.resolve()),
      beforeSwitchover: () => switchover.pass(),
    });

    const seen = await withWorkers(hosts, async () => {
      const handle = await start('limit', { throttle: 'none', maxRounds: 12 });
      await fourth.reached;
      const zero = await rejection(handle.executeUpdate(setDowntimeLimitUpdate, { args: [{ downtimeLimitMs: 0 }] }));
      const accepted = await handle.executeUpdate(setDowntimeLimitUpdate, { args: [{ downtimeLimitMs: 5000 }] });
      const progress = await handle.query(progressQuery);
      fourth.open();
      await switchover.reached;
      const lateThrottle = await rejection(handle.executeUpdate(setThrottleUpdate, { args: [{ percent: 10 }] }));
      const lateLimit = await rejection(
        handle.executeUpdate(setDowntimeLimitUpdate, { args: [{ downtimeLimitMs: 1000 }] }),
      );
      switchover.open();
      return { zero, accepted, progress, lateThrottle, lateLimit, result: await handle.result() };
    }, [fourth, switchover]);

    expect(seen.zero).toEqual(rejectedFor('downtimeLimitMs must be a positive integer, got 0'));
    expect(seen.accepted).toEqual({ downtimeLimitMs: 5000 });
    expect(seen.progress).toMatchObject({ downtimeLimitMs: 5000, throttlePolicy: 'none', throttlePercent: 0 });
    expect(seen.result).toMatchObject({ outcome: 'completed', forcedSwitchover: false, runningOn: 'h2' });
    expect(hosts.h1.sendRound).toHaveBeenCalledTimes(4);
    const downtime = expectedDowntimeAfter(seen.result.rounds[3] as RoundSummary);
    expect(downtime).toBeGreaterThan(300);
    expect(downtime).toBeLessThanOrEqual(5000);
    expect(seen.lateThrottle).toEqual(rejectedFor('the migration is in switchover: its throttle can no longer change'));
    expect(seen.lateLimit).toEqual(
      rejectedFor('the migration is in switchover: its downtime limit can no longer change'),
    );
    expect(hosts.h1.setSourceThrottle).not.toHaveBeenCalled();
  });

  it('the progress query reports the policy and the throttle the running round was sent with', async () => {
    const sixth = gate();
    const hosts = simulateHosts(HOT, { beforeRound: (round) => (round === 5 ? sixth.pass() : Promise.resolve()) });

    const progress = await withWorkers(hosts, async () => {
      const handle = await start('progress', { throttle: 'auto-converge' });
      await sixth.reached;
      const during = await handle.query(progressQuery);
      sixth.open();
      await handle.result();
      return during;
    }, [sixth]);

    const sent = percents(hosts.h1);
    expect(sent[5]).toBeGreaterThan(0);
    expect(progress).toMatchObject({
      phase: 'pre-copy',
      round: 5,
      throttlePolicy: 'auto-converge',
      throttlePercent: sent[5],
    });
  });
});
