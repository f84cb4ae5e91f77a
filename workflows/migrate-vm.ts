/**
 * `migrateVm`: the migration's durable state machine.
 *
 * prepare → pre-copy rounds → switchover → cleanup. Activities run on the task queue of the host
 * they touch. The destination's receiver is started before the first round and runs until the
 * guest resumes there; the switchover is one activity on the source that stuns, sends the rest,
 * makes the page file durable and waits for the destination to resume, so no Temporal round trip
 * sits between stun and resume.
 *
 * Any failure or cancellation before the destination resumes rolls back: the source keeps (or
 * gets back) its running guest, the destination's reservation and the page file are removed, and
 * the workflow fails with the partial result as details. A workflow that is terminated instead
 * leaves its engine state in the VMMs to their leases, which it renews while it runs (its rounds'
 * and receiver's heartbeats, renewLease while the destination is prepared): once they lapse, the
 * VMMs release it all (data-plane/vmm-handlers.ts). Replays are deterministic: time comes
 * from the workflow clock and every decision from `policy.ts`.
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
import type { IncomingStatus, RoundStats, SwitchoverStats } from '../data-plane/protocol';
import {
  DEFAULT_RESUME_TIMEOUT_MS,
  decideNextStep,
  InvalidMigrationOptionError,
  validateDowntimeLimitInput,
  validateThrottleInput,
} from './policy';
import { historyRecord, ThrottleTracker } from './throttle-tracker';
import { destinationIncidents, roundIncidents } from './incidents';
import { hostActivities } from './host-activities';
import { validateMigrateVmInput } from './migrate-vm-input';
import { completedFigures, fillTotals, initialResult, PAGE_SIZE_BYTES, rollbackIncident } from './migration-result';
import { migrationProgress } from './progress';
import type { MigrateVmInput, MigrationIncident, MigrationPhase, MigrationProgress, MigrationResult } from './types';

/** Query: where the migration stands. */
export const progressQuery = defineQuery<MigrationProgress>('progress');
/** Signal: stop the migration and roll back (ignored once the switchover has begun). */
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

  let destinationPrepared = false;
  let receiver: Promise<IncomingStatus> | undefined;
  let prepared: PrepareSourceResult | undefined;
  const receiverScope = new CancellationScope();

  try {
    const ready = await source.short.prepareSource({
      ...ref,
      ...(options.store ? { store: options.store } : {}),
      ...(options.throttle === 'history' ? { readHistory: true } : {}),
    });
    if (options.throttle === 'history') {
      const pinned = throttle.pinnedPercent;
      throttle = new ThrottleTracker('history', ready.history ?? null);
      if (pinned !== undefined) throttle.pin(pinned);
    }
    sourcePrepared = true;
    prepared = ready;
    result.store = ready.store;
    memoryPages = ready.pageCount;
    destinationPrepared = true;
    const startDestination = async (rebuildFromStore: boolean): Promise<{ done: Promise<IncomingStatus> }> => {
      // Nothing runs on the source meanwhile: its claim lives on renewals (invariant 10).
      await renewingSourceLease(
        destination.short.prepareDestination({
          ...ref,
          memoryBytes: ready.memoryBytes,
          store: ready.store,
        }),
        () => source.lease.renewLease({ ...ref, role: 'outgoing' }),
        ready.leaseTtlMs,
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
    if (cancelRequested !== undefined) throw new MigrationStop('cancelled', cancelRequested);

    setPhase('switchover');
    let handover: SwitchoverStats | undefined;
    try {
      handover = await source.switchover.switchover({ ...ref, resumeTimeoutMs: DEFAULT_RESUME_TIMEOUT_MS });
    } catch (err) {
      // The source could not confirm the handover (it died, or lost the answer). If it committed the
      // handover in the page file first, the destination finishes from there; the ownership epoch
      // keeps a source that rolled back instead from being joined by a second copy. A source that
      // says it resumed holds that epoch: nothing to settle.
      if (sourceResumedAfter(err)) throw err;
      const settled = await destination.short.settleDestination(ref);
      if (!settled.resumed || !settled.status?.final) throw err;
      otherIncidents.push({
        at: 'switchover',
        what: `the source did not confirm the handover: ${describe(err)}`,
        recovery: 'the destination finished from the page file and took ownership; the source never resumes',
      });
    }
    const received = await receiver;
    result.runningOn = input.destinationHost;
    const final = handover?.destination ?? received.final;
    if (!final) throw new Error('the destination resumed without reporting its final figures');

    // The VM runs on the destination now: cleanup runs to its end even if the workflow is
    // cancelled meanwhile, so no stunned source or page file is left behind.
    setPhase('cleanup');
    await CancellationScope.nonCancellable(async () => {
      await destination.short.finishDestination(ref);
      await source.short.releaseSource({
        ...ref,
        store: ready.store,
        keepSource: options.keepSourceAfterSwitchover,
        keepPageFile: options.keepPageFile,
      });
    });

    // What converged this migration is where the VM's next one may start (`history`). A store
    // that cannot take the record costs the next migration its head start, not this one its result.
    if (!result.forcedSwitchover) {
      const record = historyRecord({
        ...ref,
        at: new Date().toISOString(),
        sourceHost: input.sourceHost,
        destinationHost: input.destinationHost,
        summary: throttle.summary(rounds),
        rounds,
      });
      await CancellationScope.nonCancellable(() =>
        destination.record.recordVmHistory({ store: ready.store, record }).catch((e: unknown) => {
          otherIncidents.push({
            at: 'cleanup',
            what: `the VM's throttle history could not be recorded: ${describe(e)}`,
            recovery: "none needed: the VM's next migration starts without it",
          });
        }),
      );
    }

    otherIncidents.unshift(...destinationIncidents({ status: received, handoverLane: handover?.handoverLane }));
    Object.assign(result, completedFigures(received, final, handover));
    fillTotals(result, rounds, otherIncidents, Date.now() - startedAt, handover?.storeOutages);
    result.throttle = throttle.summary(rounds);
    setPhase('completed');
    return result;
  } catch (err) {
    const stop = err instanceof MigrationStop ? err : undefined;
    result.outcome = stop?.outcome ?? (isCancellation(err) ? 'cancelled' : 'failed');
    result.reason = stop?.reason ?? describe(err);
    fillTotals(result, rounds, otherIncidents, Date.now() - startedAt);
    result.throttle = throttle.summary(rounds);
    await CancellationScope.nonCancellable(async () => {
      if (result.runningOn === input.destinationHost) return;
      setPhase('rolling-back');
      receiverScope.cancel();
      let sourceProblem = '';
      const rolled = await source.short.rollbackSource(ref).catch((e: unknown) => {
        sourceProblem = describe(e);
        return { running: false };
      });
      // A destination that could not be settled may hold the VM's only copy: its failure is not
      // read as "not resumed" (see data-plane/incoming-settle.ts).
      let destinationProblem: string | undefined;
      const aborted = destinationPrepared
        ? await destination.short.abortDestination(ref).catch((e: unknown) => {
            destinationProblem = describe(e);
            return { resumed: false };
          })
        : { resumed: false };
      const stateUnknown = destinationProblem !== undefined && !rolled.running;
      if (stateUnknown) {
        result.runningOn = null;
        result.reason +=
          `; the VM's state is unknown: the destination ${input.destinationHost} could not be settled ` +
          `(${destinationProblem}), so its paused copy and the page file are kept`;
      } else if (aborted.resumed) {
        // The destination took ownership and resumed before the failure reached us: the VM lives
        // there, and the source (fenced by the ownership epoch) stays stunned.
        result.runningOn = input.destinationHost;
        result.reason += '; the destination had already resumed the VM';
      } else if (!rolled.running) {
        result.runningOn = null;
        result.reason += sourceProblem
          ? `; the source VM could not be resumed (${sourceProblem})`
          : '; the source VM could not be resumed';
      }
      // The page file of a migration that did not complete is of no further use.
      if (prepared && !options.keepPageFile && !stateUnknown) {
        await source.short.removeMigrationFiles({ ...ref, store: prepared.store }).catch(() => undefined);
      }
      otherIncidents.push(rollbackIncident(result));
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

/** The error's message with its innermost cause's, skipping empty messages. */
function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (e.message !== '' && !parts.includes(e.message)) parts.push(e.message);
  }
  return parts.length > 0 ? parts.join(': ') : String(err);
}
