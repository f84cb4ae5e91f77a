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
 * the workflow fails with the partial result as details. Replays are deterministic: time comes
 * from the workflow clock and every decision from `policy.ts`.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  defineSignal,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  type RetryPolicy,
} from '@temporalio/workflow';
import type { HostActivities, PrepareSourceResult } from '../activities/types';
import type { IncomingStatus, RoundStats, SwitchoverStats } from '../data-plane/protocol';
import { hostTaskQueue, TIMEOUTS } from '../temporal-config/presets';
import {
  DEFAULT_RESUME_TIMEOUT_MS,
  decideNextStep,
  expectedDowntimeMs,
  measuredThroughputBytesPerSec,
  resolveMigrationOptions,
  type ResolvedMigrationOptions,
} from './policy';
import { destinationIncidents, roundIncidents } from './incidents';
import type {
  MigrateVmInput,
  MigrationIncident,
  MigrationPhase,
  MigrationProgress,
  MigrationResult,
  RoundSummary,
} from './types';

/** Query: where the migration stands. */
export const progressQuery = defineQuery<MigrationProgress>('progress');
/** Signal: stop the migration and roll back (ignored once the switchover has begun). */
export const cancelSignal = defineSignal<[{ reason?: string }?]>('cancel');

const PAGE_SIZE_BYTES = 4096;
const HOST_ID = /^[A-Za-z0-9_-]{1,64}$/;
const VM_ID = /^[A-Za-z0-9_-]{1,64}$/;

function hostActivities(hostId: string) {
  const retry: RetryPolicy = {
    initialInterval: '500ms',
    backoffCoefficient: 2,
    maximumInterval: '5s',
    maximumAttempts: 20,
  };
  const short = proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.shortActivityMs,
    retry,
  });
  const long = proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.roundActivityMs,
    heartbeatTimeout: TIMEOUTS.heartbeatMs,
    retry,
  });
  const switchover = proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.shortActivityMs + DEFAULT_RESUME_TIMEOUT_MS,
    retry: { maximumAttempts: 3, initialInterval: '200ms' },
  });
  return { short, long, switchover };
}

function validateInput(input: MigrateVmInput): ResolvedMigrationOptions {
  const bad = (message: string) => ApplicationFailure.nonRetryable(message, 'InvalidInput');
  if (typeof input !== 'object' || input === null)
    throw bad('migrateVm input must be an object with vmId, sourceHost, destinationHost');
  if (typeof input.vmId !== 'string' || !VM_ID.test(input.vmId))
    throw bad(`vmId must be 1-64 letters, digits, _ or -, got ${JSON.stringify(input.vmId)}`);
  for (const key of ['sourceHost', 'destinationHost'] as const) {
    if (typeof input[key] !== 'string' || !HOST_ID.test(input[key]))
      throw bad(`${key} must be a host id, got ${JSON.stringify(input[key])}`);
  }
  if (input.sourceHost === input.destinationHost)
    throw bad(`sourceHost and destinationHost are both ${input.sourceHost}: nothing to migrate`);
  try {
    return resolveMigrationOptions(input.policy);
  } catch (err) {
    throw bad(err instanceof Error ? err.message : String(err));
  }
}

function summarizeRound(r: RoundStats): RoundSummary {
  return {
    round: r.round,
    pagesSent: r.pagesSent,
    bytesSent: r.bytesSent,
    dirtyPages: r.pendingDirtyPages,
    durationMs: r.durationMs,
    throughputBytesPerSec: r.throughputBytesPerSec,
    dirtyRateBytesPerSec: r.dirtyRateBytesPerSec,
    storeLagBytes: r.storeLagBytes,
    lane: r.lane,
  };
}

/** Live-migrates `input.vmId` from `sourceHost` to `destinationHost`; see the header comment. */
export async function migrateVm(input: MigrateVmInput): Promise<MigrationResult> {
  const options = validateInput(input);
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
  const result: MigrationResult = {
    migrationId,
    vmId: input.vmId,
    sourceHost: input.sourceHost,
    destinationHost: input.destinationHost,
    outcome: 'failed',
    forcedSwitchover: false,
    rounds: [],
    downtimeMs: 0,
    totalMs: 0,
    bytesViaNetwork: 0,
    bytesViaStore: 0,
    bytesMirroredToStore: 0,
    gapBatches: 0,
    verified: false,
    sourceDigest: '',
    destinationDigest: '',
    runningOn: input.sourceHost,
    incidents: [],
  };

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

  setHandler(progressQuery, (): MigrationProgress => {
    const last = rounds[rounds.length - 1];
    const throughput = measuredThroughputBytesPerSec(rounds);
    const pendingBytes = (last?.pendingDirtyPages ?? memoryPages) * PAGE_SIZE_BYTES;
    return {
      migrationId,
      vmId: input.vmId,
      phase,
      round: rounds.length,
      pagesRemaining: last?.pendingDirtyPages ?? memoryPages,
      memoryPages,
      bytesSent: rounds.reduce((sum, r) => sum + r.bytesSent, 0),
      throughputBytesPerSec: throughput,
      dirtyRateBytesPerSec: last?.dirtyRateBytesPerSec ?? 0,
      expectedDowntimeMs: last ? expectedDowntimeMs(pendingBytes, throughput) : -1,
      downtimeLimitMs: options.downtimeLimitMs,
      elapsedMs: Date.now() - startedAt,
      bytesViaNetwork: rounds.reduce((sum, r) => sum + (r.lane === 'network' ? r.bytesSent : 0), 0),
      bytesViaStoreOnly: rounds.reduce((sum, r) => sum + (r.lane === 'store' ? r.bytesSent : 0), 0),
      incidents: [...roundIncidents(rounds), ...otherIncidents],
    };
  });
  setHandler(cancelSignal, (args) => {
    cancelRequested ??= args?.reason ?? 'cancelled by request';
  });

  const ref = { migrationId, vmId: input.vmId };
  let destinationPrepared = false;
  let receiver: Promise<IncomingStatus> | undefined;
  let prepared: PrepareSourceResult | undefined;
  const receiverScope = new CancellationScope();

  try {
    const ready = await source.short.prepareSource({
      ...ref,
      ...(options.storeDir ? { storeDir: options.storeDir } : {}),
    });
    prepared = ready;
    memoryPages = ready.pageCount;
    destinationPrepared = true;
    await destination.short.prepareDestination({
      ...ref,
      memoryBytes: ready.memoryBytes,
      storeDir: ready.storeDir,
    });
    receiver = receiverScope.run(() =>
      destination.long.receivePages({
        ...ref,
        storeDir: ready.storeDir,
        baseEpoch: ready.baseEpoch,
        creditWindow: options.creditWindow,
      }),
    );
    receiver.catch(() => undefined);

    setPhase('pre-copy');
    for (let round = 0; ; round += 1) {
      if (cancelRequested !== undefined) throw new MigrationStop('cancelled', cancelRequested);
      const stats = await Promise.race([
        source.long.sendRound({
          ...ref,
          round,
          storeDir: ready.storeDir,
          baseEpoch: ready.baseEpoch,
          batchPages: options.batchPages,
        }),
        receiver.then(() => {
          throw new Error('destination receiver ended before the switchover');
        }),
      ]);
      rounds.push(stats);
      const step = decideNextStep({
        options,
        rounds,
        pageSizeBytes: PAGE_SIZE_BYTES,
        memoryBytes: ready.memoryBytes,
        elapsedMs: Date.now() - startedAt,
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

    setPhase('cleanup');
    await destination.short.finishDestination(ref);
    await source.short.releaseSource({
      ...ref,
      storeDir: ready.storeDir,
      keepSource: options.keepSourceAfterSwitchover,
      keepPageFile: options.keepPageFile,
    });

    otherIncidents.unshift(...destinationIncidents({ status: received, handoverLane: handover?.handoverLane }));
    Object.assign(result, {
      outcome: 'completed',
      // Without the source's confirmation, downtime is the destination's view: stun to its resume.
      downtimeMs: handover?.downtimeMs ?? final.resumedAt - final.stunAt,
      bytesViaNetwork: received.bytesReceived,
      bytesViaStore: (final.pagesFromStore + (final.pagesPrefetched ?? 0)) * PAGE_SIZE_BYTES,
      gapBatches: final.gapBatches,
      // The destination resumes only once its digest equals the one the source took at stun.
      verified: handover ? final.digest === handover.sourceDigest : true,
      sourceDigest: handover?.sourceDigest ?? final.digest,
      destinationDigest: final.digest,
      ...(handover
        ? {
            switchover: {
              finalPages: handover.finalPages,
              finalSendMs: handover.finalSendMs,
              storeDurableMs: handover.storeDurableMs,
              storeLagBytes: handover.storeLagBytes,
              destinationVerifyMs: final.verifyMs,
              pagesFromStore: final.pagesFromStore,
              pagesPrefetched: final.pagesPrefetched ?? 0,
              destinationDowntimeMs: final.resumedAt - handover.stunAt,
              handoverLane: handover.handoverLane,
            },
          }
        : {}),
    });
    fillTotals();
    setPhase('completed');
    return result;
  } catch (err) {
    const stop = err instanceof MigrationStop ? err : undefined;
    result.outcome = stop?.outcome ?? (isCancellation(err) ? 'cancelled' : 'failed');
    result.reason = stop?.reason ?? describe(err);
    fillTotals();
    await CancellationScope.nonCancellable(async () => {
      if (result.runningOn === input.destinationHost) return;
      setPhase('rolling-back');
      receiverScope.cancel();
      let sourceProblem = '';
      const rolled = await source.short.rollbackSource(ref).catch((e: unknown) => {
        sourceProblem = describe(e);
        return { running: false };
      });
      const aborted = destinationPrepared
        ? await destination.short.abortDestination(ref).catch(() => ({ resumed: false }))
        : { resumed: false };
      if (aborted.resumed) {
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
      if (prepared && !options.keepPageFile) {
        await source.short.removeMigrationFiles({ ...ref, storeDir: prepared.storeDir }).catch(() => undefined);
      }
      otherIncidents.push({
        at: 'rollback',
        what: result.reason ?? 'the migration failed',
        recovery:
          result.runningOn === input.sourceHost
            ? 'rolled back: the source VM runs on and the destination was cleaned up'
            : result.runningOn === input.destinationHost
              ? 'none needed: the VM runs on the destination, which owns it'
              : 'none possible: no copy of the VM runs',
      });
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

  function fillTotals(): void {
    result.rounds = rounds.map(summarizeRound);
    result.incidents = [...roundIncidents(rounds), ...otherIncidents];
    result.totalMs = Date.now() - startedAt;
    result.bytesMirroredToStore = rounds.reduce((sum, r) => sum + r.pagesSent * PAGE_SIZE_BYTES, 0);
    if (result.bytesViaNetwork === 0) result.bytesViaNetwork = rounds.reduce((sum, r) => sum + r.bytesSent, 0);
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
