/** Inputs and results of the host agent's activities (small JSON: ids and counters). */
import type { IncomingStatus, RoundStats, RoundThrottleInput, SwitchoverStats } from '../model/protocol';
import type { VmHistoryRecord } from '../store/vm-history';
import type { VmRecord } from '../vmm/driver';
import type { Workload } from '../vmm/vcpu';
import type { VmDriverName } from '../vmm/vm-spec';

/** Identifies one migration on one host. */
export interface MigrationRefInput {
  migrationId: string;
  vmId: string;
}

/** Input of `prepareSource`. */
export interface PrepareSourceInput extends MigrationRefInput {
  store?: string;
  /** Also read the VM's history record from the store (the `history` throttle policy). */
  readHistory?: boolean;
}

/** What the source reports at prepare. */
export interface PrepareSourceResult {
  pageCount: number;
  memoryBytes: number;
  /** The hypervisor that runs the VM; the destination starts the same (absent: simulated). */
  driver?: VmDriverName;
  /** A QEMU VM's guest image key (VmRecord.guestImageKey): the destination starts that image. */
  guestImageKey?: string;
  store: string;
  /** Ownership epoch the source holds now. */
  baseEpoch: number;
  workload: Workload;
  /** With `readHistory`: the VM's record, or null if the store has none. */
  history?: VmHistoryRecord | null;
  /** Lease of the migration's engine state in the hosts' VMMs (ms): the workflow renews well within it. */
  leaseTtlMs?: number;
  /**
   * Random nonce the migration's key is derived with on each host (data-plane/migration-key.ts);
   * without the cluster secret it is worthless, so it may travel in Temporal history.
   */
  keyNonce: string;
  /** Attempt of the activity that answered (above 1 after a retry, e.g. its agent was lost). */
  activityAttempt?: number;
}

/** What a control step reports of its own run. */
export interface StepReport {
  /** Attempt of the activity that answered (above 1 after a retry, e.g. its agent was lost). */
  activityAttempt: number;
}

/** Input of `renewLease`: which side of the migration to renew on the host. */
export interface RenewLeaseInput extends MigrationRefInput {
  role: 'outgoing' | 'incoming';
}

/**
 * Activities that renew a migration's lease where the workflow runs nothing else on a host (its
 * rounds and receiver renew it as they heartbeat). Apart from HostActivities so that fakes of a
 * migration need not serve it.
 */
export interface LeaseActivities {
  /** Renews the migration's lease in the VM's VMM; `renewed` false if it holds none for it. */
  renewLease(input: RenewLeaseInput): Promise<{ renewed: boolean }>;
}

/** Input of `abortDestination`. */
export interface AbortDestinationInput extends MigrationRefInput {
  /**
   * The source's guest runs again (it rolled back, taking the ownership epoch, or never stunned):
   * the destination cannot own the VM, so it is removed without settling first (no store read).
   */
  sourceRuns?: boolean;
}

/** Input of `prepareDestination`. */
export interface PrepareDestinationInput extends MigrationRefInput {
  memoryBytes: number;
  /** The source's hypervisor (absent: simulated). */
  driver?: VmDriverName;
  /** The source's QEMU guest image key (PrepareSourceResult.guestImageKey), used if this host holds it. */
  guestImageKey?: string;
  store: string;
}

/** Input of `receivePages`. */
export interface ReceivePagesInput extends MigrationRefInput {
  /** The host sending the VM (its id is part of the migration's NATS subjects). */
  sourceHost: string;
  store: string;
  baseEpoch: number;
  creditWindow: number;
  /** PrepareSourceResult.keyNonce. */
  keyNonce: string;
  /** See IncomingStartInput.rebuildFromStore. */
  rebuildFromStore?: boolean;
}

/** Input of `sendRound`. */
export interface SendRoundInput extends MigrationRefInput {
  /** The host receiving the VM (its id is part of the migration's NATS subjects). */
  destinationHost: string;
  round: number;
  store: string;
  baseEpoch: number;
  batchPages: number;
  /** PrepareSourceResult.keyNonce. */
  keyNonce: string;
  /** The destination depends on the store (it replaced a crashed one): the store's writer goes full speed. */
  storeFirst?: boolean;
  /** Encrypt page data on the stream (MigrationOptions.encrypt); absent, in clear. */
  encrypt?: boolean;
  /** The vCPU throttle for the round; absent, the source leaves it as it is. */
  throttle?: RoundThrottleInput;
}

/** Input of `setSourceThrottle`. */
export interface SetSourceThrottleInput extends MigrationRefInput {
  /** Percent of the vCPU's time to deschedule, 0..99. */
  percent: number;
}

/** Input of `recordVmHistory`. */
export interface RecordVmHistoryInput {
  store: string;
  record: VmHistoryRecord;
}

/** Input of `switchover`. */
export interface SwitchoverInput extends MigrationRefInput {
  resumeTimeoutMs: number;
}

/** Input of `releaseSource`. */
export interface ReleaseSourceInput extends MigrationRefInput {
  store: string;
  keepSource: boolean;
  keepPageFile?: boolean;
}

/** Input of `createVm`. */
export interface CreateVmInput {
  vmId: string;
  memoryBytes: number;
  workload: Workload;
  seed?: number;
  /** The hypervisor to run it (default simulated). */
  driver?: VmDriverName;
}

/** A VM as listed by a host. */
export interface VmSummary extends VmRecord {
  state: string;
}

/** The activities every host agent serves on its own task queue. */
export interface HostActivities {
  prepareSource(input: PrepareSourceInput): Promise<PrepareSourceResult>;
  /** Answers at once: the workflow's proof that an agent serves the host. */
  ping(): Promise<{ hostId: string }>;
  prepareDestination(input: PrepareDestinationInput): Promise<StepReport>;
  receivePages(input: ReceivePagesInput): Promise<IncomingStatus>;
  sendRound(input: SendRoundInput): Promise<RoundStats>;
  /** Sets the source's vCPU throttle now, while a round runs or between rounds. */
  setSourceThrottle(input: SetSourceThrottleInput): Promise<{ percent: number }>;
  /** Writes what the VM's migration learned to the store, for its next migration. */
  recordVmHistory(input: RecordVmHistoryInput): Promise<void>;
  switchover(input: SwitchoverInput): Promise<SwitchoverStats>;
  rollbackSource(input: MigrationRefInput): Promise<{ running: boolean }>;
  abortDestination(input: AbortDestinationInput): Promise<{ resumed: boolean }>;
  /**
   * After a failed switchover: lets the destination finish if the source committed the handover in
   * the page file, and reports whether the guest runs there now. Never aborts.
   */
  settleDestination(input: MigrationRefInput): Promise<{ resumed: boolean; status?: IncomingStatus }>;
  releaseSource(input: ReleaseSourceInput): Promise<void>;
  /** Deletes the migration's page file, manifests and mailbox from the store (idempotent). */
  removeMigrationFiles(input: MigrationRefInput & { store: string }): Promise<void>;
  finishDestination(input: MigrationRefInput): Promise<void>;
  createVm(input: CreateVmInput): Promise<VmSummary>;
  listVms(): Promise<VmSummary[]>;
  destroyVm(input: { vmId: string }): Promise<void>;
  /** Writes the VM's whole memory to `path` (for page-by-page checks), and its vCPU state. */
  dumpVmMemory(input: {
    vmId: string;
    path: string;
    at?: 'now' | 'resume';
  }): Promise<{ state: string; pagesWritten: number }>;
}
