/**
 * The `MigrationResult` of `migrateVm`, built from the figures the activities report: the empty
 * result a migration starts with, the figures of a completed one and the totals over the rounds.
 * Pure functions: the workflow calls them, unit tests too.
 */
import type { IncomingStatus, RoundStats, SwitchoverStats } from '../model/protocol';
import { roundIncidents } from './incidents';
import type { StoreOutage } from '../store/page-store';
import { measuredThrottlePercent } from './throttle-tracker';
import type { MigrateVmInput, MigrationIncident, MigrationResult, RoundSummary } from './types';

/** Size of a guest page (bytes): the activities count pages, the result and the progress count bytes. */
export const PAGE_SIZE_BYTES = 4096;

/** One pre-copy round as the result reports it. */
export function summarizeRound(r: RoundStats): RoundSummary {
  return {
    round: r.round,
    pagesSent: r.pagesSent,
    bytesSent: r.bytesSent,
    dirtyPages: r.pendingDirtyPages,
    stunScanMs: r.stunScanMs ?? 0,
    durationMs: r.durationMs,
    throughputBytesPerSec: r.throughputBytesPerSec,
    dirtyRateBytesPerSec: r.dirtyRateBytesPerSec,
    storeLagBytes: r.storeLagBytes,
    lane: r.lane,
    throttlePercent: measuredThrottlePercent(r),
    guestWriteRateBytesPerSec: Math.round(r.throttle?.guestWriteRateBytesPerSec ?? 0),
  };
}

/** The result before anything has happened: failed, the VM on the source, every figure zero. */
export function initialResult(migrationId: string, input: MigrateVmInput): MigrationResult {
  return {
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
    rejectedMessages: 0,
    verified: false,
    sourceDigest: '',
    destinationDigest: '',
    runningOn: input.sourceHost,
    incidents: [],
  };
}

/**
 * The figures of a completed migration, to be assigned onto its result: from the destination's
 * final reply and, if the source confirmed the handover (`handover` set), from the source's
 * switchover figures too.
 */
export function completedFigures(
  received: IncomingStatus,
  final: NonNullable<IncomingStatus['final']>,
  handover: SwitchoverStats | undefined,
): Partial<MigrationResult> {
  return {
    outcome: 'completed',
    // Without the source's confirmation, downtime is the destination's view: stun to its resume.
    downtimeMs: handover?.downtimeMs ?? final.resumedAt - final.stunAt,
    bytesViaNetwork: received.bytesReceived,
    bytesViaStore: (final.pagesFromStore + (final.pagesPrefetched ?? 0)) * PAGE_SIZE_BYTES,
    gapBatches: final.gapBatches,
    rejectedMessages: (received.rejectedMessages ?? 0) + (handover?.rejectedMessages ?? 0),
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
  };
}

/**
 * Sets on `result` what the rounds add up to, the incidents so far and `totalMs` (ms since the
 * start); `bytesViaNetwork` only if the destination did not report it.
 */
export function fillTotals(
  result: MigrationResult,
  rounds: readonly RoundStats[],
  otherIncidents: readonly MigrationIncident[],
  totalMs: number,
  storeOutages?: readonly StoreOutage[],
): void {
  result.rounds = rounds.map(summarizeRound);
  result.incidents = [...roundIncidents(rounds, storeOutages), ...otherIncidents];
  result.totalMs = totalMs;
  result.bytesMirroredToStore = rounds.reduce((sum, r) => sum + r.pagesSent * PAGE_SIZE_BYTES, 0);
  if (result.bytesViaNetwork === 0) result.bytesViaNetwork = rounds.reduce((sum, r) => sum + r.bytesSent, 0);
}

/**
 * The incident a rollback adds to `result`: why the migration stopped, and where the VM runs now.
 * `touchedAny` is false when the migration stopped before it asked any host to change anything.
 */
export function rollbackIncident(result: MigrationResult, touchedAny = true): MigrationIncident {
  return {
    at: 'rollback',
    what: result.reason ?? 'the migration failed',
    recovery: !touchedAny
      ? 'nothing to roll back: no host had been changed, and the VM runs on where it ran'
      : result.runningOn === result.sourceHost
        ? 'rolled back: the source VM runs on and the destination was cleaned up'
        : result.runningOn === result.destinationHost
          ? 'none needed: the VM runs on the destination, which owns it'
          : 'none possible: no copy of the VM runs',
  };
}

/**
 * The destination's status at its resume, built from the final reply the source's switchover
 * reported: what the result shows when the destination's receiving activity could not report it.
 */
export function resumedStatus(migrationId: string, final: NonNullable<IncomingStatus['final']>): IncomingStatus {
  return {
    migrationId,
    state: 'resumed',
    appliedSeq: 0,
    batches: 0,
    bytesReceived: 0,
    pagesApplied: 0,
    gapBatches: final.gapBatches,
    final,
  };
}
