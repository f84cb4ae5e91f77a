/** Inputs, results and messages of ferry's workflows: JSON only, small (ids and counters). */
import type { ThrottlePolicy } from './throttle-policy';
import type { ThrottleSummary } from './throttle-tracker';

export type { ThrottleSummary } from './throttle-tracker';
/** Input of `migrateVm` (what `temporal workflow start --input` takes); its schema is model's migrateVmInputSchema. */
export type { MigrateVmInput } from '../model';

/** Phases of a migration, as shown by the progress query and the MigrationPhase search attribute. */
export type MigrationPhase =
  | 'prepare'
  | 'pre-copy'
  | 'switchover'
  | 'cleanup'
  | 'completed'
  | 'rolling-back'
  | 'rolled-back'
  | 'cancelled'
  | 'failed';

/** One pre-copy round as reported in the result. */
export interface RoundSummary {
  round: number;
  pagesSent: number;
  bytesSent: number;
  /** Distinct pages dirtied during the round (sent by the next round or the switchover). */
  dirtyPages: number;
  /** How long the source took to find them (ms): the stun repeats it (RoundStats.stunScanMs); 0 if not reported. */
  stunScanMs: number;
  durationMs: number;
  throughputBytesPerSec: number;
  dirtyRateBytesPerSec: number;
  storeLagBytes: number;
  /** `store` once the network lane was given up and the round went to the page file only. */
  lane: 'network' | 'store';
  /** Share of the round's time the throttle descheduled the vCPU (percent, measured). */
  throttlePercent: number;
  /** Page writes of the guest per second during the round (each dirties 4 KiB), however often a page was hit. */
  guestWriteRateBytesPerSec: number;
}

/** How a migration ended. */
export type MigrationOutcome = 'completed' | 'aborted' | 'cancelled' | 'failed';

/** Result of `migrateVm`; also attached (partially filled) to the failure of a migration that did not complete. */
export interface MigrationResult {
  migrationId: string;
  vmId: string;
  sourceHost: string;
  destinationHost: string;
  outcome: MigrationOutcome;
  /** Why the migration did not complete. */
  reason?: string;
  /** True when the switchover was forced past the give-up limits. */
  forcedSwitchover: boolean;
  rounds: RoundSummary[];
  /** Stun to the destination's confirmed resume, measured on the source. */
  downtimeMs: number;
  totalMs: number;
  bytesViaNetwork: number;
  /** Bytes the destination read from the page file: during pre-copy while the stream was down, and at switchover. */
  bytesViaStore: number;
  /** Bytes mirrored into the page file. */
  bytesMirroredToStore: number;
  gapBatches: number;
  /**
   * Messages the two hosts dropped as not authentic under the migration's key or malformed (forged
   * or replayed batches, grants, control requests and replies), up to the handover.
   */
  rejectedMessages: number;
  verified: boolean;
  sourceDigest: string;
  destinationDigest: string;
  /** Where the VM runs at the end; null if no copy runs (its only process died). */
  runningOn: string | null;
  /** What failed on the way and how it was recovered (empty for an undisturbed migration). */
  incidents: MigrationIncident[];
  /** Where the downtime went (absent if the switchover did not happen). */
  switchover?: SwitchoverSummary;
  /** The shared store the migration used (a directory or `s3://bucket/prefix`), once the source named it. */
  store?: string;
  /** The vCPU throttle over the migration, and what it cost the guest. */
  throttle?: ThrottleSummary;
}

/** The switchover, step by step. */
export interface SwitchoverSummary {
  finalPages: number;
  /** Stun to the last page handed to the stream (ms). */
  finalSendMs: number;
  /** Further wait for the final manifest to be durable (ms). */
  storeDurableMs: number;
  /** Bytes the page file did not yet hold durably at stun. */
  storeLagBytes: number;
  /** Destination: waiting for the last batches, filling from the file and checking the digest (ms). */
  destinationVerifyMs: number;
  pagesFromStore: number;
  /** Pages the destination read from the page file during pre-copy, the stream being down or stalled. */
  pagesPrefetched: number;
  /** Downtime as the destination sees it: source stun to its own resume, by wall clock (ms). */
  destinationDowntimeMs: number;
  /** How the final request reached the destination: over NATS, or through the store's mailbox. */
  handoverLane: 'network' | 'store';
}

/** Something that failed during a migration, and what ferry did about it. */
export interface MigrationIncident {
  /** Where it happened: `round 3`, `stream`, `receiver`, `switchover`, `rollback`. */
  at: string;
  what: string;
  recovery: string;
}

/** Answer of the `progress` query. */
export interface MigrationProgress {
  migrationId: string;
  vmId: string;
  phase: MigrationPhase;
  round: number;
  pagesRemaining: number;
  memoryPages: number;
  bytesSent: number;
  throughputBytesPerSec: number;
  dirtyRateBytesPerSec: number;
  /** Downtime a switchover now would cost (ms): the stun's scan plus pending bytes ÷ throughput (policy.ts). */
  expectedDowntimeMs: number;
  downtimeLimitMs: number;
  throttlePolicy: ThrottlePolicy;
  /** Throttle the next (or current) round starts with (percent). */
  throttlePercent: number;
  elapsedMs: number;
  /** Bytes of the rounds so far that went over NATS (and into the page file). */
  bytesViaNetwork: number;
  /** Bytes of the rounds so far that went into the page file alone, the network lane being down. */
  bytesViaStoreOnly: number;
  /** Failures met so far and their recovery. */
  incidents: MigrationIncident[];
}
