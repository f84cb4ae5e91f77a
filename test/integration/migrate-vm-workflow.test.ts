/**
 * migrateVm against the time-skipping test server, with both hosts' activities replaced by an
 * in-memory simulation of a migration (the project's HostActivities interface): each pre-copy round
 * reports a scripted number of pending dirty pages at a fixed throughput, so the policy's decisions
 * and the workflow's reaction to them are visible in its result, its failure and the activities it
 * called on each host.
 */
import { Context } from '@temporalio/activity';
import type { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { HostActivities } from '../../activities/types';
import type { IncomingStatus, RoundStats, SwitchoverStats } from '../../model/protocol';
import { CONTROL_TASK_QUEUE } from '../../temporal-config';
import { cancelSignal, migrateVm, progressQuery } from '../../workflows';
import type { MigrationOptions } from '../../workflows/policy';
import type { MigrateVmInput, MigrationResult } from '../../workflows/types';
import {
  deferred,
  failureOf,
  fakeHosts,
  gate,
  heartbeating,
  NOT_IN_A_MIGRATION,
  useTimeSkipping,
  withWorkers as runWorkers,
  type FakeHost,
  type FakeHosts,
} from './support/time-skipping';

jest.setTimeout(120_000);

const PAGE = 4096;
const GIB = 2 ** 30;
/** 10,000 pages/s: the default 300 ms downtime limit allows 3,000 pending pages. */
const THROUGHPUT_BYTES_PER_SEC = 10_000 * PAGE;
const ROUND_DURATION_MS = 200;
const DIGEST = 'c0ffee'.repeat(10) + 'beef';

/** How the simulated migration behaves. */
interface Script {
  /** Pending dirty pages reported by round r; the last entry repeats. */
  pendingDirtyPages: readonly number[];
  memoryBytes?: number;
  /** Real time each sendRound takes (ms), to spend the completion budget. */
  sendRoundRealMs?: number;
  /** Runs at the start of sendRound, e.g. to hold a round until the test lets it go. */
  beforeRound?: (round: number) => Promise<void>;
  /** Runs at the start of the switchover. */
  beforeSwitchover?: () => Promise<void>;
  /** Runs at the start of releaseSource (in cleanup, after the destination resumed). */
  beforeRelease?: () => Promise<void>;
  /** Makes finishDestination fail (after the destination resumed). */
  finishFailure?: ApplicationFailure;
  /** Makes releaseSource fail (after the destination resumed). */
  releaseFailure?: ApplicationFailure;
  switchoverFailure?: ApplicationFailure;
  /** Makes the destination's receiver fail as soon as it starts. */
  receiverFailure?: ApplicationFailure;
  /** After a failed switchover, the destination reports it finished from the page file anyway. */
  destinationSettlesResumed?: boolean;
}

/**
 * One simulated migration between two hosts: `hosts.h1` and `hosts.h2` each serve every
 * HostActivities method as a jest.fn, so a test sees which host was asked to do what.
 */
function simulateMigration(script: Script): FakeHosts {
  const memoryBytes = script.memoryBytes ?? 64 * 1024 * 1024;
  const pageCount = memoryBytes / PAGE;
  const destinationDone = deferred<IncomingStatus>();
  const pendingAfter = (round: number): number =>
    script.pendingDirtyPages[Math.min(round, script.pendingDirtyPages.length - 1)] as number;

  const behaviour: Omit<HostActivities, 'ping'> = {
    prepareSource: async () => ({
      pageCount,
      memoryBytes,
      store: '/shared/ferry',
      baseEpoch: 4,
      keyNonce: 'n',
      workload: { type: 'idle' },
    }),
    prepareDestination: async () => ({ activityAttempt: 1 }),
    receivePages: async () => {
      if (script.receiverFailure) throw script.receiverFailure;
      return heartbeating(() => destinationDone.promise);
    },
    sendRound: async ({ round }) => {
      const stats = (): RoundStats => {
        const pending = pendingAfter(round);
        return {
          round,
          dirtyPagesAtStart: round === 0 ? pageCount : pendingAfter(round - 1),
          pagesSent: round === 0 ? pageCount : pendingAfter(round - 1),
          zeroPages: 0,
          bytesSent: (THROUGHPUT_BYTES_PER_SEC * ROUND_DURATION_MS) / 1000,
          durationMs: ROUND_DURATION_MS,
          throughputBytesPerSec: THROUGHPUT_BYTES_PER_SEC,
          pendingDirtyPages: pending,
          dirtyRateBytesPerSec: (pending * PAGE * 1000) / ROUND_DURATION_MS,
          storeLagBytes: 0,
          lane: 'network',
          vcpu: { state: 'running', throttlePercent: 0, workUnits: 0, pagesWritten: 0, runMs: 0, throttledMs: 0 },
        };
      };
      return heartbeating(async () => {
        await script.beforeRound?.(round);
        if (script.sendRoundRealMs !== undefined) await Context.current().sleep(script.sendRoundRealMs);
        return stats();
      });
    },
    switchover: async ({ migrationId }) => {
      await script.beforeSwitchover?.();
      if (script.switchoverFailure) throw script.switchoverFailure;
      const destination: SwitchoverStats['destination'] = {
        ok: true,
        stunAt: Date.now() - 42,
        contentDigest: 'c',
        resumedAt: Date.now(),
        digest: DIGEST,
        pagesFromStore: 3,
        gapBatches: 1,
        tornPagesRepaired: 0,
        verifyMs: 2,
      };
      destinationDone.resolve({
        migrationId,
        state: 'resumed',
        appliedSeq: 40,
        batches: 40,
        bytesReceived: 7_777_777,
        pagesApplied: 1_000,
        gapBatches: 1,
        final: destination,
      });
      return {
        finalPages: 100,
        finalBytes: 100 * PAGE,
        downtimeMs: 42,
        finalSendMs: 10,
        storeDurableMs: 5,
        storeLagBytes: 0,
        stunAt: Date.now() - 42,
        handoverLane: 'network',
        destination,
        sourceDigest: DIGEST,
      };
    },
    rollbackSource: async () => ({ running: true }),
    setSourceThrottle: async ({ percent }) => ({ percent }),
    recordVmHistory: async () => undefined,
    abortDestination: async ({ migrationId }) => {
      destinationDone.resolve({
        migrationId,
        state: 'aborted',
        appliedSeq: 0,
        batches: 0,
        bytesReceived: 0,
        pagesApplied: 0,
        gapBatches: 0,
      });
      return { resumed: false };
    },
    settleDestination: async ({ migrationId }) => {
      if (!script.destinationSettlesResumed) return { resumed: false };
      const status: IncomingStatus = {
        migrationId,
        state: 'resumed',
        appliedSeq: 40,
        batches: 40,
        bytesReceived: 7_777_777,
        pagesApplied: 1_000,
        gapBatches: 0,
        final: {
          ok: true,
          stunAt: Date.now() - 42,
          contentDigest: 'c',
          resumedAt: Date.now(),
          digest: DIGEST,
          pagesFromStore: 100,
          gapBatches: 0,
          tornPagesRepaired: 0,
          verifyMs: 2,
        },
      };
      destinationDone.resolve(status);
      return { resumed: true, status };
    },
    releaseSource: async () => {
      await script.beforeRelease?.();
      if (script.releaseFailure) throw script.releaseFailure;
    },
    removeMigrationFiles: async () => undefined,
    finishDestination: async () => {
      if (script.finishFailure) throw script.finishFailure;
    },
    ...NOT_IN_A_MIGRATION,
  };
  return fakeHosts(behaviour);
}

/** Every activity the fake host served, by name (for "was never called" checks). */
function calledActivities(host: FakeHost): string[] {
  return Object.entries(host)
    .filter(([, fn]) => (fn as jest.Mock).mock.calls.length > 0)
    .map(([name]) => name)
    .sort();
}

describe('migrateVm workflow', () => {
  const ts = useTimeSkipping();
  let nextId = 0;

  /** Runs `fn` while the orchestrator and both host agents (h1, h2) serve their task queues. */
  function withWorkers<T>(hosts: FakeHosts, fn: () => Promise<T>): Promise<T> {
    return runWorkers(ts, hosts, fn);
  }

  function start(
    name: string,
    policy?: MigrationOptions,
    input?: Partial<MigrateVmInput>,
  ): Promise<WorkflowHandle<typeof migrateVm>> {
    nextId += 1;
    const args: MigrateVmInput = {
      vmId: 'vm-7',
      sourceHost: 'h1',
      destinationHost: 'h2',
      // The scripted guest does not slow down under a throttle: no throttle here (the policies'
      // decisions are tested against a guest that does, in throttle-workflow.test.ts).
      policy: { throttle: 'none', ...policy },
      ...input,
    };
    return ts.env.client.workflow.start(migrateVm, {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: `${name}-${nextId}-${Date.now()}`,
      args: [args],
    });
  }

  function failureDetails(error: WorkflowFailedError): MigrationResult {
    const cause = error.cause as ApplicationFailure;
    return cause.details?.[0] as MigrationResult;
  }

  it('runs pre-copy rounds until the expected downtime is within the limit, then switches over and cleans up', async () => {
    // 2,800 pages fit the 300 ms limit at 10,000 pages/s, and the last round no longer halves the rest.
    const pending = [50_000, 20_000, 5_000, 2_800];
    const hosts = simulateMigration({ pendingDirtyPages: pending });

    const { result, progress } = await withWorkers(hosts, async () => {
      const handle = await start('converges');
      const result = await handle.result();
      return { result, progress: await handle.query(progressQuery) };
    });

    expect(result).toMatchObject({
      vmId: 'vm-7',
      sourceHost: 'h1',
      destinationHost: 'h2',
      outcome: 'completed',
      forcedSwitchover: false,
      runningOn: 'h2',
      downtimeMs: 42,
      verified: true,
      sourceDigest: DIGEST,
      destinationDigest: DIGEST,
      bytesViaNetwork: 7_777_777,
      bytesViaStore: 3 * PAGE,
      gapBatches: 1,
    });
    expect(result.reason).toBeUndefined();
    expect(result.rounds.map((r) => r.dirtyPages)).toEqual(pending);
    expect(result.rounds.map((r) => r.round)).toEqual([0, 1, 2, 3]);
    expect(progress).toMatchObject({ phase: 'completed', round: 4, vmId: 'vm-7' });

    expect(hosts.h1.sendRound.mock.calls.map(([input]) => input.round)).toEqual([0, 1, 2, 3]);
    expect(hosts.h1.switchover).toHaveBeenCalledTimes(1);
    const ref = { migrationId: result.migrationId, vmId: 'vm-7' };
    expect(hosts.h2.finishDestination).toHaveBeenCalledWith(ref);
    expect(hosts.h1.releaseSource).toHaveBeenCalledWith({
      ...ref,
      store: '/shared/ferry',
      keepSource: false,
      keepPageFile: false,
    });
    expect(calledActivities(hosts.h1)).toEqual(['ping', 'prepareSource', 'releaseSource', 'sendRound', 'switchover']);
    // The destination, owner now, records what converged the migration for the VM's next one.
    expect(calledActivities(hosts.h2)).toEqual([
      'finishDestination',
      'ping',
      'prepareDestination',
      'receivePages',
      'recordVmHistory',
    ]);
  });

  it('aborts and rolls back when pre-copy never converges within maxRounds and onGiveUp is abort', async () => {
    const hosts = simulateMigration({ pendingDirtyPages: [100_000] });

    const error = await withWorkers(hosts, async () =>
      failureOf(await start('aborts', { maxRounds: 3, onGiveUp: 'abort' })),
    );

    expect(error.cause).toMatchObject({ name: 'ApplicationFailure', type: 'MigrationAborted', nonRetryable: true });
    expect(error.cause?.message).toContain('did not converge in 3 rounds');
    const details = failureDetails(error);
    expect(details).toMatchObject({ outcome: 'aborted', runningOn: 'h1', forcedSwitchover: false });
    expect(details.reason).toContain('did not converge in 3 rounds');
    expect(details.rounds).toHaveLength(3);
    expect(hosts.h1.sendRound).toHaveBeenCalledTimes(3);
    expect(hosts.h1.rollbackSource).toHaveBeenCalledTimes(1);
    expect(hosts.h2.abortDestination).toHaveBeenCalledTimes(1);
    expect(hosts.h1.switchover).not.toHaveBeenCalled();
    expect(hosts.h2.finishDestination).not.toHaveBeenCalled();
    expect(hosts.h1.releaseSource).not.toHaveBeenCalled();
  });

  it('forces a switchover when pre-copy never converges within maxRounds and onGiveUp is force-switchover', async () => {
    const hosts = simulateMigration({ pendingDirtyPages: [100_000] });

    const result = await withWorkers(hosts, async () =>
      (await start('forces', { maxRounds: 3, onGiveUp: 'force-switchover' })).result(),
    );

    expect(result).toMatchObject({ outcome: 'completed', forcedSwitchover: true, runningOn: 'h2' });
    expect(result.rounds).toHaveLength(3);
    expect(hosts.h1.switchover).toHaveBeenCalledTimes(1);
    expect(hosts.h1.rollbackSource).not.toHaveBeenCalled();
    expect(hosts.h2.finishDestination).toHaveBeenCalledTimes(1);
    expect(hosts.h1.releaseSource).toHaveBeenCalledTimes(1);
  });

  it('aborts once the completion budget per GiB is spent, saying so', async () => {
    // 1 s per GiB of a 1 GiB guest: a 1 s budget, spent after a few 300 ms rounds.
    const hosts = simulateMigration({ pendingDirtyPages: [100_000], memoryBytes: GIB, sendRoundRealMs: 300 });

    const error = await withWorkers(hosts, async () =>
      failureOf(await start('budget', { completionBudgetSecPerGiB: 1 })),
    );

    expect(error.cause).toMatchObject({ type: 'MigrationAborted' });
    const details = failureDetails(error);
    expect(details.outcome).toBe('aborted');
    expect(details.reason).toContain('did not converge within the completion budget of 1000 ms');
    expect(details.rounds.length).toBeGreaterThanOrEqual(2);
    expect(details.rounds.length).toBeLessThan(30);
    expect(hosts.h1.rollbackSource).toHaveBeenCalledTimes(1);
    expect(hosts.h1.switchover).not.toHaveBeenCalled();
  });

  it('fails as MigrationFailed and rolls the source back when the switchover fails', async () => {
    const hosts = simulateMigration({
      pendingDirtyPages: [1_000],
      switchoverFailure: ApplicationFailure.nonRetryable('destination refused the final pages', 'SwitchoverFailed'),
    });

    const error = await withWorkers(hosts, async () => failureOf(await start('switchover-fails')));

    expect(error.cause).toMatchObject({ name: 'ApplicationFailure', type: 'MigrationFailed' });
    expect(error.cause?.message).toContain('destination refused the final pages');
    expect(error.cause?.cause).toMatchObject({
      name: 'ActivityFailure',
      cause: { name: 'ApplicationFailure', type: 'SwitchoverFailed' },
    });
    const details = failureDetails(error);
    expect(details).toMatchObject({ outcome: 'failed', runningOn: 'h1' });
    expect(details.reason).toContain('destination refused the final pages');
    expect(hosts.h1.switchover).toHaveBeenCalledTimes(1);
    expect(hosts.h1.rollbackSource).toHaveBeenCalledTimes(1);
    expect(hosts.h2.settleDestination).toHaveBeenCalledTimes(1);
    expect(hosts.h2.abortDestination).toHaveBeenCalledTimes(1);
    expect(hosts.h2.finishDestination).not.toHaveBeenCalled();
    expect(hosts.h1.releaseSource).not.toHaveBeenCalled();
    expect(details.incidents).toEqual([
      expect.objectContaining({ at: 'rollback', recovery: expect.stringContaining('source VM runs on') }),
    ]);
  });

  it('completes on the destination when the source fails the switchover after committing the handover, and says so', async () => {
    const hosts = simulateMigration({
      pendingDirtyPages: [1_000],
      switchoverFailure: ApplicationFailure.nonRetryable('the VMM of VM vm-7 on host h1 exited', 'VmmExited'),
      destinationSettlesResumed: true,
    });

    const result = await withWorkers(hosts, async () => (await start('source-dies-after-commit')).result());

    expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true, downtimeMs: 42 });
    expect(result.switchover).toBeUndefined();
    expect(result.bytesViaStore).toBe(100 * PAGE);
    expect(result.incidents).toEqual([
      expect.objectContaining({ at: 'switchover', what: expect.stringContaining('exited') }),
    ]);
    expect(hosts.h2.settleDestination).toHaveBeenCalledTimes(1);
    expect(hosts.h1.rollbackSource).not.toHaveBeenCalled();
    expect(hosts.h2.abortDestination).not.toHaveBeenCalled();
    expect(hosts.h2.finishDestination).toHaveBeenCalledTimes(1);
  });
  it('answers the progress query during pre-copy, and rolls back as MigrationCancelled on the cancel signal', async () => {
    const firstRound = gate();
    const secondRound = gate();
    const hosts = simulateMigration({
      pendingDirtyPages: [50_000],
      beforeRound: (round) => (round === 0 ? firstRound.pass() : round === 1 ? secondRound.pass() : Promise.resolve()),
    });

    const { beforeFirstRound, duringSecondRound, error, finalProgress } = await withWorkers(hosts, async () => {
      const handle = await start('cancelled');
      await firstRound.reached;
      const beforeFirstRound = await handle.query(progressQuery);
      firstRound.open();
      await secondRound.reached;
      const duringSecondRound = await handle.query(progressQuery);
      await handle.signal(cancelSignal, { reason: 'operator changed their mind' });
      secondRound.open();
      const error = await failureOf(handle);
      return { beforeFirstRound, duringSecondRound, error, finalProgress: await handle.query(progressQuery) };
    });

    const memoryPages = (64 * 1024 * 1024) / PAGE;
    expect(beforeFirstRound).toMatchObject({
      phase: 'pre-copy',
      round: 0,
      memoryPages,
      pagesRemaining: memoryPages,
      bytesSent: 0,
      expectedDowntimeMs: -1,
    });
    expect(duringSecondRound).toMatchObject({
      vmId: 'vm-7',
      phase: 'pre-copy',
      round: 1,
      memoryPages,
      pagesRemaining: 50_000,
      bytesSent: (THROUGHPUT_BYTES_PER_SEC * ROUND_DURATION_MS) / 1000,
      throughputBytesPerSec: THROUGHPUT_BYTES_PER_SEC,
      expectedDowntimeMs: 5_000,
      downtimeLimitMs: 300,
    });
    expect(error.cause).toMatchObject({ name: 'ApplicationFailure', type: 'MigrationCancelled' });
    const details = failureDetails(error);
    expect(details).toMatchObject({ outcome: 'cancelled', reason: 'operator changed their mind', runningOn: 'h1' });
    expect(finalProgress.phase).toBe('cancelled');
    expect(hosts.h1.sendRound).toHaveBeenCalledTimes(2);
    expect(hosts.h1.rollbackSource).toHaveBeenCalledTimes(1);
    expect(hosts.h2.abortDestination).toHaveBeenCalledTimes(1);
    expect(hosts.h1.switchover).not.toHaveBeenCalled();
  });

  it('does not switch over when the cancel signal arrives during the round that converges', async () => {
    const secondRound = gate();
    const hosts = simulateMigration({
      pendingDirtyPages: [50_000, 1_000],
      beforeRound: (round) => (round === 1 ? secondRound.pass() : Promise.resolve()),
    });

    const error = await withWorkers(hosts, async () => {
      const handle = await start('cancel-last-round');
      await secondRound.reached;
      await handle.signal(cancelSignal);
      secondRound.open();
      return failureOf(handle);
    });

    expect(error.cause).toMatchObject({ type: 'MigrationCancelled' });
    expect(failureDetails(error)).toMatchObject({
      outcome: 'cancelled',
      reason: 'cancelled by request',
      runningOn: 'h1',
    });
    expect(hosts.h1.switchover).not.toHaveBeenCalled();
    expect(hosts.h1.rollbackSource).toHaveBeenCalledTimes(1);
  });

  it('ignores the cancel signal once the switchover has begun, and completes', async () => {
    const switchover = gate();
    const hosts = simulateMigration({ pendingDirtyPages: [1_000], beforeSwitchover: () => switchover.pass() });

    const result = await withWorkers(hosts, async () => {
      const handle = await start('cancel-too-late');
      await switchover.reached;
      await handle.signal(cancelSignal, { reason: 'too late' });
      switchover.open();
      return handle.result();
    });

    expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2' });
    expect(hosts.h1.rollbackSource).not.toHaveBeenCalled();
    expect(hosts.h2.abortDestination).not.toHaveBeenCalled();
  });

  it('completes when the cancel signal or a Temporal cancellation arrives during cleanup: the VM already runs on the destination', async () => {
    for (const how of ['signal', 'temporal'] as const) {
      const cleanup = gate();
      const hosts = simulateMigration({ pendingDirtyPages: [1_000], beforeRelease: () => cleanup.pass() });

      const outcome = await withWorkers(hosts, async () => {
        const handle = await start(`cancel-in-cleanup-${how}`);
        await cleanup.reached;
        expect((await handle.query(progressQuery)).phase).toBe('cleanup');
        if (how === 'signal') await handle.signal(cancelSignal, { reason: 'too late' });
        else await handle.cancel();
        cleanup.open();
        return handle.result().then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        );
      });

      // Never rolled back: the destination owns the VM, and cleanup runs to its end.
      expect('result' in outcome ? outcome.result : outcome).toMatchObject({ outcome: 'completed', runningOn: 'h2' });
      expect(hosts.h1.rollbackSource).not.toHaveBeenCalled();
      expect(hosts.h2.abortDestination).not.toHaveBeenCalled();
      expect(hosts.h1.releaseSource).toHaveBeenCalledTimes(1);
    }
  });

  it('rolls back when the workflow itself is cancelled during pre-copy', async () => {
    const secondRound = gate();
    const hosts = simulateMigration({
      pendingDirtyPages: [50_000],
      beforeRound: (round) => (round === 1 ? secondRound.pass() : Promise.resolve()),
    });

    const { error, finalProgress } = await withWorkers(hosts, async () => {
      const handle = await start('workflow-cancel');
      await secondRound.reached;
      await handle.cancel();
      const error = await failureOf(handle);
      return { error, finalProgress: await handle.query(progressQuery) };
    });

    expect(error.cause).toMatchObject({ type: 'MigrationCancelled' });
    expect(failureDetails(error)).toMatchObject({ outcome: 'cancelled', runningOn: 'h1' });
    expect(finalProgress.phase).toBe('cancelled');
    expect(hosts.h1.rollbackSource).toHaveBeenCalledTimes(1);
    expect(hosts.h2.abortDestination).toHaveBeenCalledTimes(1);
    expect(hosts.h1.switchover).not.toHaveBeenCalled();
  });

  it('fails as MigrationFailed and rolls back when the destination receiver fails during pre-copy', async () => {
    const hosts = simulateMigration({
      pendingDirtyPages: [50_000],
      receiverFailure: ApplicationFailure.nonRetryable('destination lost its page stream', 'ReceiverFailed'),
    });

    const error = await withWorkers(hosts, async () => failureOf(await start('receiver-fails')));

    expect(error.cause).toMatchObject({ type: 'MigrationFailed' });
    expect(failureDetails(error)).toMatchObject({ outcome: 'failed', runningOn: 'h1' });
    expect(failureDetails(error).reason).toContain('destination lost its page stream');
    expect(hosts.h1.rollbackSource).toHaveBeenCalledTimes(1);
    expect(hosts.h2.abortDestination).toHaveBeenCalledTimes(1);
    expect(hosts.h1.switchover).not.toHaveBeenCalled();
  });

  it('rejects a migration from a host to itself as InvalidInput, before touching any host', async () => {
    const hosts = simulateMigration({ pendingDirtyPages: [0] });

    const error = await withWorkers(hosts, async () =>
      failureOf(await start('same-host', undefined, { destinationHost: 'h1' })),
    );

    expect(error.cause).toMatchObject({ name: 'ApplicationFailure', type: 'InvalidInput', nonRetryable: true });
    expect(error.cause?.message).toBe('sourceHost and destinationHost are both h1: nothing to migrate');
    expect(calledActivities(hosts.h1)).toEqual([]);
    expect(calledActivities(hosts.h2)).toEqual([]);
  });

  it('rejects a negative downtime limit as InvalidInput naming the option and the value', async () => {
    const hosts = simulateMigration({ pendingDirtyPages: [0] });

    const error = await withWorkers(hosts, async () => failureOf(await start('bad-limit', { downtimeLimitMs: -1 })));

    expect(error.cause).toMatchObject({ type: 'InvalidInput' });
    expect(error.cause?.message).toBe('policy.downtimeLimitMs must be a positive integer, got -1');
    expect(calledActivities(hosts.h1)).toEqual([]);
  });

  it('completes on the destination, with the cleanup failures as incidents, when finishDestination and releaseSource fail after the resume', async () => {
    const hosts = simulateMigration({
      pendingDirtyPages: [1_000],
      finishFailure: ApplicationFailure.nonRetryable('record store is read-only', 'VmNotFound'),
      releaseFailure: ApplicationFailure.nonRetryable('the source VMM does not answer', 'VmmExited'),
    });

    const result = await withWorkers(hosts, async () => (await start('cleanup-fails')).result());

    // The guest resumed on h2: that is where it runs, whatever cleanup could not do afterwards.
    expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true, downtimeMs: 42 });
    expect(result.reason).toBeUndefined();
    expect(result.incidents).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ at: 'cleanup', what: expect.stringContaining('record store is read-only') }),
        expect.objectContaining({
          at: 'cleanup',
          what: expect.stringContaining('the source VMM does not answer'),
          recovery: expect.stringContaining('ferry vm destroy vm-7 --host h1'),
        }),
      ]),
    );
    expect(hosts.h1.releaseSource).toHaveBeenCalledTimes(1);
    expect(hosts.h1.rollbackSource).not.toHaveBeenCalled();
    expect(hosts.h2.abortDestination).not.toHaveBeenCalled();
  });

  it('refuses maxRounds above 1,000 as InvalidInput, naming the limit, before touching any host', async () => {
    const hosts = simulateMigration({ pendingDirtyPages: [0] });

    const error = await withWorkers(hosts, async () => failureOf(await start('too-many-rounds', { maxRounds: 1_001 })));

    expect(error.cause).toMatchObject({ type: 'InvalidInput', nonRetryable: true });
    expect(error.cause?.message).toBe('policy.maxRounds must be a positive integer up to 1000, got 1001');
    expect(calledActivities(hosts.h1)).toEqual([]);
  });

  it('runs 1,000 rounds, the most maxRounds allows, within Temporal history limits', async () => {
    const hosts = simulateMigration({ pendingDirtyPages: [100_000] });

    const { result, history } = await withWorkers(hosts, async () => {
      const handle = await start('thousand-rounds', {
        maxRounds: 1_000,
        onGiveUp: 'force-switchover',
        completionBudgetSecPerGiB: 1_000_000,
      });
      const result = await handle.result();
      return { result, history: await handle.fetchHistory() };
    });

    expect(result).toMatchObject({ outcome: 'completed', forcedSwitchover: true });
    expect(result.rounds).toHaveLength(1_000);
    // Temporal warns past 10,240 events or 10 MiB and terminates past 51,200 events or 50 MiB.
    const events = history.events ?? [];
    const bytes = JSON.stringify(history).length;
    expect(events.length).toBeLessThan(10_240);
    expect(bytes).toBeLessThan(10 * 2 ** 20);
  });

  it('fails as HostUnavailable naming the host, within seconds and before touching the source, when no agent serves the destination', async () => {
    const hosts = simulateMigration({ pendingDirtyPages: [1_000] });

    const error = await withWorkers(hosts, async () =>
      failureOf(await start('unknown-destination', undefined, { destinationHost: 'h3' })),
    );

    expect(error.cause).toMatchObject({ name: 'ApplicationFailure', type: 'HostUnavailable', nonRetryable: true });
    expect(error.cause?.message).toContain('host h3 is unavailable');
    expect(error.cause?.message).toContain('ferry-host-h3');
    expect(failureDetails(error)).toMatchObject({ outcome: 'failed', runningOn: 'h1' });
    expect(calledActivities(hosts.h1).filter((name) => name !== 'ping')).toEqual([]);
  });
});
