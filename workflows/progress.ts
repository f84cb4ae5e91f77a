/**
 * The answer of the `progress` query, derived from what the workflow knows so far. A pure
 * function: the query handler calls it, unit tests too.
 */
import type { RoundStats } from '../model/protocol';
import { roundIncidents } from './incidents';
import { PAGE_SIZE_BYTES } from './migration-result';
import { expectedDowntimeMs, measuredThroughputBytesPerSec } from './policy';
import type { ThrottlePolicy } from './throttle-policy';
import type { MigrationIncident, MigrationPhase, MigrationProgress } from './types';

/** What the workflow knows when it is asked for its progress. */
export interface ProgressState {
  migrationId: string;
  vmId: string;
  phase: MigrationPhase;
  /** The pre-copy rounds so far, in order. */
  rounds: readonly RoundStats[];
  /** Pages of the guest's memory; 0 until the source is prepared. */
  memoryPages: number;
  downtimeLimitMs: number;
  throttlePolicy: ThrottlePolicy;
  throttlePercent: number;
  /** Time since the workflow started (ms). */
  elapsedMs: number;
  /** Failures met outside the rounds' own figures. */
  otherIncidents: readonly MigrationIncident[];
}

/** The progress report; `expectedDowntimeMs` is -1 until the first round has ended. */
export function migrationProgress(state: ProgressState): MigrationProgress {
  const { rounds, memoryPages } = state;
  const last = rounds[rounds.length - 1];
  const throughput = measuredThroughputBytesPerSec(rounds);
  const pendingBytes = (last?.pendingDirtyPages ?? memoryPages) * PAGE_SIZE_BYTES;
  return {
    migrationId: state.migrationId,
    vmId: state.vmId,
    phase: state.phase,
    round: rounds.length,
    pagesRemaining: last?.pendingDirtyPages ?? memoryPages,
    memoryPages,
    bytesSent: rounds.reduce((sum, r) => sum + r.bytesSent, 0),
    throughputBytesPerSec: throughput,
    dirtyRateBytesPerSec: last?.dirtyRateBytesPerSec ?? 0,
    expectedDowntimeMs: last ? expectedDowntimeMs(pendingBytes, throughput, last.stunScanMs) : -1,
    downtimeLimitMs: state.downtimeLimitMs,
    throttlePolicy: state.throttlePolicy,
    throttlePercent: state.throttlePercent,
    elapsedMs: state.elapsedMs,
    bytesViaNetwork: rounds.reduce((sum, r) => sum + (r.lane === 'network' ? r.bytesSent : 0), 0),
    bytesViaStoreOnly: rounds.reduce((sum, r) => sum + (r.lane === 'store' ? r.bytesSent : 0), 0),
    incidents: [...roundIncidents(rounds), ...state.otherIncidents],
  };
}
