/**
 * `migrateVm`: the migration's durable state machine.
 *
 * prepare → pre-copy rounds → switchover → cleanup. Activities run on the task queue of the host
 * they touch. The destination's receiver is started before the first round and runs until the
 * guest resumes there; the switchover is one activity on the source that stuns, sends the rest,
 * makes the page file durable and waits for the destination to resume, so no Temporal round trip
 * sits between stun and resume.
 *
 * Both hosts are pinged first (`reachHosts`): a host no agent serves fails the migration within
 * TIMEOUTS.hostReachMs as `HostUnavailable`, before anything is touched.
 *
 * Cancellation stops prepare at once, even inside a step that waits on a host, and pre-copy at
 * once (Temporal's cancellation) or at the end of the round under way (the `cancel` signal); from
 * the switchover on it is ignored, and the migration ends where the guest runs. Any failure or cancellation before the destination resumes rolls back
 * (rollback.ts): the hosts the migration touched, and only they, are asked to give the source back
 * its running guest and to remove the destination's reservation and the page file, each step
 * bounded; the workflow fails with the partial result as details. Once the destination resumed,
 * the migration has completed: cleanup failures are incidents of its result, which says the VM
 * runs on the destination. Replays are deterministic: time comes from the workflow clock and every
 * decision from `policy.ts`.
 *
 * A workflow that is terminated instead leaves its engine state in the VMMs to their leases, which
 * it renews while it runs (its rounds' and receiver's heartbeats, renewLease while the destination
 * is prepared): once they lapse, the VMMs release it all (data-plane/vmm-handlers.ts).
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  defineUpdate,
  isCancellation,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { PrepareSourceResult } from '../activities/types';
import type { IncomingStatus, RoundStats, SwitchoverStats } from '../model/protocol';
import {
  DEFAULT_RESUME_TIMEOUT_MS,
  decideNextStep,
  InvalidMigrationOptionError,
  validateDowntimeLimitInput,
  validateThrottleInput,
} from './policy';
import { historyRecord, ThrottleTracker } from './throttle-tracker';
import { describeError as describe, destinationIncidents, retriedStepIncident, roundIncidents } from './incidents';
import { agentLost, HOST_UNAVAILABLE, hostActivities, reachHosts } from './host-activities';
import { validateMigrateVmInput } from './migrate-vm-input';
import {
  completedFigures,
  fillTotals,
  initialResult,
  PAGE_SIZE_BYTES,
  resumedStatus,
  rollbackIncident,
} from './migration-result';
import { cleanUpAfterResume, rollBack } from './rollback';
import { migrationProgress } from './progress';
import type { MigrateVmInput, MigrationIncident, MigrationPhase, MigrationProgress, MigrationResult } from './types';

/** Query: where the migration stands. */
export const progressQuery = defineQuery<MigrationProgress>('progress');
/** Signal: stop the migration (in prepare at once, in pre-copy at the round's end) and roll back; ignored once the switchover has begun. */
export const cancelSignal = defineSignal<[{ reason?: string }?]>('cancel');
/**
 * Update: pin the source's vCPU throttle at `percent` (0..99) from now on, or hand it back to the
 * policy with null. Rejected, with the reason, for a bad value, an unknown key or once pre-copy is over.
 */
export const setThrottleUpdate = defineUpdate<ThrottleUpdateResult, [{ percent: number | null }]>('setThrottle');
/**
 * Update: change the downtime limit the switchover decision uses, from the next round's end on.
 * Rejected, with the reason, for a bad value, an unknown key or once pre-copy is over.
 */
export const setDowntimeLimitUpdate = defineUpdate<{ downtimeLimitMs: number }, [{ downtimeLimitMs: number }]>(
  'setDowntimeLimit',
);

/** Answer of the setThrottle update. */
export interface ThrottleUpdateResult {
  /** Throttle the guest runs under now (percent). */
  throttlePercent: number;
  /** Whether it is pinned (true) or the policy's again (false). */
  pinned: boolean;
}

/** Throws InvalidMigrationOptionError unless a running migration still takes changes in `phase`. */
function assertChangeable(phase: MigrationPhase, what: string): void {
  if (phase !== 'prepare' && phase !== 'pre-copy')
    throw new InvalidMigrationOptionError(`the migration is in ${phase}: its ${what} can no longer change`);
}

/** Live-migrates `input.vmId` from `sourceHost` to `destinationHost`; see the header comment. */
export async function migrateVm(input: MigrateVmInput): Promise<MigrationResult> {
  const options = validateMigrateVmInput(input);
  const startedAt = Date.now();
  // Unique per run: a VM migrated again reuses its workflow id, and nothing a former run left in the
  // store (a late mailbox message, a page file) may be taken for this run's.
  const { workflowId, runId } = workflowInfo();
  const migrationId = `${workflowId}-${runId}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const source = hostActivities(input.sourceHost);
  const destination = hostActivities(input.destinationHost);

  let phase: MigrationPhase = 'prepare';
  let cancelRequested: string | undefined;
  let memoryPages = 0;
  const rounds: RoundStats[] = [];
  /** Failures met outside the rounds' own figures (a switchover the source could not confirm, …). */
  const otherIncidents: MigrationIncident[] = [];
  const result = initialResult(migrationId, input);
  let downtimeLimitMs = options.downtimeLimitMs;
  let throttle = new ThrottleTracker(options.throttle);
  /** Set once the source is prepared; a throttle asked for before its first round starts it. */
  let sourcePrepared = false;
  /** Hosts asked to change something (their prepare was started): the only ones a rollback calls. */
  const touched = { source: false, destination: false };
  /** Prepare and pre-copy, which a cancel stops (see the header comment). */
  const beforeSwitchover = new CancellationScope();
  // The receiver runs from prepare until the guest resumes on the destination. A Temporal
  // cancellation must not stop it mid-switchover: only the rollback does, explicitly.
  const receiverScope = new CancellationScope({
    cancellable: true,
    parent: new CancellationScope({ cancellable: false }),
  });

  const setPhase = (next: MigrationPhase) => {
    phase = next;
    upsertSearchAttributes({ MigrationPhase: [next] });
  };
  upsertSearchAttributes({
    VmId: [input.vmId],
    SourceHost: [input.sourceHost],
    DestinationHost: [input.destinationHost],
    MigrationPhase: [phase],
  });

  setHandler(progressQuery, () =>
    migrationProgress({
      migrationId,
      vmId: input.vmId,
      phase,
      rounds,
      memoryPages,
      downtimeLimitMs,
      throttlePolicy: throttle.policy,
      throttlePercent: throttle.percent,
      elapsedMs: Date.now() - startedAt,
      otherIncidents,
    }),
  );
  setHandler(cancelSignal, (args) => {
    cancelRequested ??= args?.reason ?? 'cancelled by request';
    // A prepare may wait on a host for long: it stops at once. A round stops at its end, as rounds
    // are bounded by their heartbeats; Temporal's own cancellation stops both at once.
    if (phase === 'prepare') beforeSwitchover.cancel();
  });
  const ref = { migrationId, vmId: input.vmId };
  setHandler(
    setThrottleUpdate,
    async (args) => {
      const percent = validateThrottleInput(args);
      throttle.pin(percent);
      // Between prepare and the first round the source has no migration to throttle yet: the
      // first round starts with it.
      if (percent !== null && sourcePrepared && phase === 'pre-copy')
        await source.record.setSourceThrottle({ ...ref, percent });
      return { throttlePercent: throttle.percent, pinned: percent !== null };
    },
    {
      validator: (args) => {
        assertChangeable(phase, 'throttle');
        validateThrottleInput(args);
      },
    },
  );
  setHandler(
    setDowntimeLimitUpdate,
    (args) => {
      downtimeLimitMs = validateDowntimeLimitInput(args);
      return { downtimeLimitMs };
    },
    {
      validator: (args) => {
        assertChangeable(phase, 'downtime limit');
        validateDowntimeLimitInput(args);
      },
    },
  );

  let receiver: Promise<IncomingStatus> | undefined;
  let prepared: PrepareSourceResult | undefined;
  const noteRetry = (at: string, step: string, hostId: string, attempt: number | undefined) => {
    if (attempt !== undefined && attempt > 1) otherIncidents.push(retriedStepIncident(at, step, hostId, attempt));
  };

  try {
    const ready = await beforeSwitchover.run(async () => {
      if (cancelRequested !== undefined) throw new MigrationStop('cancelled', cancelRequested);
      await reachHosts([input.sourceHost, input.destinationHost]);
      touched.source = true;
      const ready = await source.short.prepareSource({
        ...ref,
        ...(options.store ? { store: options.store } : {}),
        ...(options.throttle === 'history' ? { readHistory: true } : {}),
      });
      noteRetry('prepare', 'prepareSource', input.sourceHost, ready.activityAttempt);
      if (options.throttle === 'history') {
        const pinned = throttle.pinnedPercent;
        throttle = new ThrottleTracker('history', ready.history ?? null);
        if (pinned !== undefined) throttle.pin(pinned);
      }
      sourcePrepared = true;
      prepared = ready;
      result.store = ready.store;
      memoryPages = ready.pageCount;
      const startDestination = async (rebuildFromStore: boolean): Promise<{ done: Promise<IncomingStatus> }> => {
        touched.destination = true;
        // Nothing runs on the source meanwhile: its claim lives on renewals (invariant 10).
        const step = await renewingSourceLease(
          destination.short.prepareDestination({
            ...ref,
            memoryBytes: ready.memoryBytes,
            ...(ready.driver !== undefined ? { driver: ready.driver } : {}),
            ...(ready.guestImageKey !== undefined ? { guestImageKey: ready.guestImageKey } : {}),
            store: ready.store,
          }),
          () => source.lease.renewLease({ ...ref, role: 'outgoing' }),
          ready.leaseTtlMs,
        );
        noteRetry(
          phase === 'prepare' ? 'prepare' : 'pre-copy',
          'prepareDestination',
          input.destinationHost,
          step?.activityAttempt,
        );
        const started = receiverScope.run(() =>
          destination.long.receivePages({
            ...ref,
            sourceHost: input.sourceHost,
            store: ready.store,
            baseEpoch: ready.baseEpoch,
            creditWindow: options.creditWindow,
            keyNonce: ready.keyNonce,
            ...(rebuildFromStore ? { rebuildFromStore } : {}),
          }),
        );
        started.catch(() => undefined);
        return { done: started };
      };
      receiver = (await startDestination(false)).done;
      let destinationReplacements = 0;

      setPhase('pre-copy');
      for (let round = 0; ; round += 1) {
        if (cancelRequested !== undefined) throw new MigrationStop('cancelled', cancelRequested);
        const sending = source.long.sendRound({
          ...ref,
          destinationHost: input.destinationHost,
          round,
          store: ready.store,
          baseEpoch: ready.baseEpoch,
          batchPages: options.batchPages,
          keyNonce: ready.keyNonce,
          ...(options.encrypt ? { encrypt: true } : {}),
          ...(destinationReplacements > 0 ? { storeFirst: true } : {}),
          throttle: throttle.roundInput(),
        });
        // If the receiver fails first, the round's own end (often a rejection) is no longer awaited.
        sending.catch(() => undefined);
        let stats: RoundStats | undefined;
        while (stats === undefined) {
          const outcome = await Promise.race([
            sending.then((s) => ({ stats: s })),
            receiver.then(
              () => ({ receiverFailure: new Error('destination receiver ended before the switchover') as unknown }),
              (e: unknown) => ({ receiverFailure: e }),
            ),
          ]);
          if ('stats' in outcome) {
            stats = outcome.stats;
            break;
          }
          // The destination VMM died mid pre-copy: everything sent so far is in the page file, so a new
          // destination VMM rebuilds from there while the round goes on, instead of starting over.
          const failure = outcome.receiverFailure;
          if (!vmmExited(failure) || destinationReplacements >= MAX_DESTINATION_REPLACEMENTS) throw failure;
          destinationReplacements += 1;
          otherIncidents.push({
            at: `round ${round}`,
            what: `the destination VMM exited (${describe(failure)})`,
            recovery: 'a new destination VMM took its place and rebuilt from the page file; the stream went on',
          });
          receiver = (await startDestination(true)).done;
        }
        rounds.push(stats);
        throttle.afterRound(rounds);
        const step = decideNextStep({
          options: { ...options, downtimeLimitMs },
          rounds,
          pageSizeBytes: PAGE_SIZE_BYTES,
          memoryBytes: ready.memoryBytes,
          elapsedMs: Date.now() - startedAt,
          throttled: throttle.engaged,
        });
        if (step.type === 'abort') throw new MigrationStop('aborted', step.reason);
        if (step.type === 'switchover') {
          result.forcedSwitchover = step.forced;
          break;
        }
      }
      return ready;
    });
    if (cancelRequested !== undefined) throw new MigrationStop('cancelled', cancelRequested);

    setPhase('switchover');
    // From the switchover on, a cancel is ignored: the migration ends where the guest runs.
    return await CancellationScope.nonCancellable(async () => {
      let handover: SwitchoverStats | undefined;
      /** The destination's status at its resume, should its receiving activity not report it. */
      let atResume: IncomingStatus;
      try {
        handover = await source.switchover.switchover({ ...ref, resumeTimeoutMs: DEFAULT_RESUME_TIMEOUT_MS });
        atResume = resumedStatus(migrationId, handover.destination);
      } catch (err) {
        // The source could not confirm the handover (it died, or lost the answer). If it committed the
        // handover in the page file first, the destination finishes from there; the ownership epoch
        // keeps a source that rolled back instead from being joined by a second copy. A source that
        // says it resumed holds that epoch: nothing to settle.
        if (sourceResumedAfter(err)) throw err;
        const settled = await destination.short.settleDestination(ref);
        if (!settled.resumed || !settled.status?.final) throw err;
        atResume = settled.status;
        otherIncidents.push({
          at: 'switchover',
          what: `the source did not confirm the handover: ${describe(err)}`,
          recovery: 'the destination finished from the page file and took ownership; the source never resumes',
        });
      }
      // The guest runs on the destination: whatever fails from here on, the migration has completed.
      result.runningOn = input.destinationHost;
      const lostHosts = new Set<string>();
      const received = await (receiver as Promise<IncomingStatus>).catch((err: unknown) => {
        if (agentLost(err)) lostHosts.add(input.destinationHost);
        otherIncidents.push({
          at: 'receiver',
          what: `the destination's receiving activity failed after the resume: ${describe(err)}`,
          recovery: "none needed: the guest runs on the destination; its figures come from the switchover's report",
        });
        return atResume;
      });
      const final = handover?.destination ?? received.final ?? (atResume.final as NonNullable<IncomingStatus['final']>);

      setPhase('cleanup');
      otherIncidents.push(
        ...(await cleanUpAfterResume({
          ref,
          sourceHost: input.sourceHost,
          destinationHost: input.destinationHost,
          store: ready.store,
          keepSource: options.keepSourceAfterSwitchover,
          keepPageFile: options.keepPageFile,
          lostHosts,
        })),
      );

      // What converged this migration is where the VM's next one may start (`history`). A store
      // that cannot take the record costs the next migration its head start, not this one its result.
      if (!result.forcedSwitchover && lostHosts.has(input.destinationHost)) {
        otherIncidents.push({
          at: 'cleanup',
          what: `the VM's throttle history was not recorded: no agent of host ${input.destinationHost} answered`,
          recovery: "none needed: the VM's next migration starts without it",
        });
      } else if (!result.forcedSwitchover) {
        const record = historyRecord({
          ...ref,
          at: new Date().toISOString(),
          sourceHost: input.sourceHost,
          destinationHost: input.destinationHost,
          summary: throttle.summary(rounds),
          rounds,
        });
        await destination.record.recordVmHistory({ store: ready.store, record }).catch((e: unknown) => {
          otherIncidents.push({
            at: 'cleanup',
            what: `the VM's throttle history could not be recorded: ${describe(e)}`,
            recovery: "none needed: the VM's next migration starts without it",
          });
        });
      }

      otherIncidents.unshift(...destinationIncidents({ status: received, handoverLane: handover?.handoverLane }));
      Object.assign(result, completedFigures(received, final, handover));
      fillTotals(result, rounds, otherIncidents, Date.now() - startedAt, handover?.storeOutages);
      result.throttle = throttle.summary(rounds);
      setPhase('completed');
      return result;
    });
  } catch (err) {
    const stop = err instanceof MigrationStop ? err : undefined;
    const cancelled = isCancellation(err);
    result.outcome = stop?.outcome ?? (cancelled ? 'cancelled' : 'failed');
    const unavailable = err instanceof ApplicationFailure && err.type === HOST_UNAVAILABLE;
    result.reason =
      stop?.reason ??
      (cancelled
        ? (cancelRequested ?? 'the workflow was cancelled through Temporal')
        : unavailable
          ? err.message
          : describe(err));
    fillTotals(result, rounds, otherIncidents, Date.now() - startedAt);
    result.throttle = throttle.summary(rounds);
    await CancellationScope.nonCancellable(async () => {
      if (result.runningOn === input.destinationHost) return;
      setPhase('rolling-back');
      receiverScope.cancel();
      const rolled = await rollBack({
        ref,
        sourceHost: input.sourceHost,
        destinationHost: input.destinationHost,
        touched,
        // The page file of a migration that did not complete is of no further use.
        pageFileStore: prepared && !options.keepPageFile ? prepared.store : undefined,
      });
      result.runningOn = rolled.runningOn;
      result.reason += rolled.reasonSuffix;
      otherIncidents.push(...rolled.incidents, rollbackIncident(result, touched.source || touched.destination));
      result.incidents = [...roundIncidents(rounds), ...otherIncidents];
      setPhase(result.outcome === 'cancelled' ? 'cancelled' : 'rolled-back');
    });
    throw ApplicationFailure.create({
      message: `migration of ${input.vmId} ${result.outcome}: ${result.reason}`,
      type:
        result.outcome === 'cancelled'
          ? 'MigrationCancelled'
          : result.outcome === 'aborted'
            ? 'MigrationAborted'
            : unavailable
              ? HOST_UNAVAILABLE
              : 'MigrationFailed',
      nonRetryable: true,
      details: [result],
      ...(err instanceof Error && !(err instanceof MigrationStop) ? { cause: err } : {}),
    });
  }
}

/** A planned end of the migration (abort by policy or cancel signal), not a failure. */
class MigrationStop extends Error {
  override readonly name = 'MigrationStop';
  constructor(
    readonly outcome: 'aborted' | 'cancelled',
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** Lease assumed when the source did not report one (ms); see DEFAULT_MIGRATION_LEASE_TTL_MS. */
const ASSUMED_LEASE_TTL_MS = 30_000;

/**
 * Awaits `step`, calling `renew` every third of the lease (`leaseTtlMs`) until it settles: the
 * source's claim must outlive a step that does not touch the source. Renewals are not awaited, so a
 * slow one never holds the migration up.
 */
async function renewingSourceLease<T>(
  step: Promise<T>,
  renew: () => Promise<unknown>,
  leaseTtlMs = ASSUMED_LEASE_TTL_MS,
): Promise<T> {
  let settled = false;
  const tracked = step.finally(() => {
    settled = true;
  });
  tracked.catch(() => undefined);
  while (!(await condition(() => settled, Math.max(500, Math.floor(leaseTtlMs / 3))))) {
    renew().catch(() => undefined);
  }
  return tracked;
}

/** How many times a destination VMM that died during pre-copy is replaced before the migration fails. */
const MAX_DESTINATION_REPLACEMENTS = 2;

/** Whether `err` is an activity failure saying the VMM it called exited. */
function vmmExited(err: unknown): boolean {
  const failure = err instanceof ActivityFailure ? err.cause : undefined;
  return failure instanceof ApplicationFailure && failure.type === 'VmmExited';
}

/** Whether `err` is a failed switchover after which the source VM resumed (it rolled back itself). */
function sourceResumedAfter(err: unknown): boolean {
  const failure = err instanceof ActivityFailure ? err.cause : undefined;
  if (!(failure instanceof ApplicationFailure) || failure.type !== 'SwitchoverFailed') return false;
  return (failure.details?.[0] as { rolledBack?: unknown } | undefined)?.rolledBack === true;
}
