/**
 * The host agent's activities, built by `createActivities(deps)` so tests can hand in another
 * driver or store. Each is idempotent: the VMM-side methods they call answer a repeated request
 * from the first run, so a retry after an agent restart continues instead of starting over. Long
 * activities heartbeat every second with their progress and notice cancellation through it; on
 * cancellation they stop their side of the migration and rethrow.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { HypervisorDriver } from '../vmm/driver';
import type { VmmClient } from '../vmm/vmm-client';
import type { IncomingStatus, RoundStats, SwitchoverStats } from '../data-plane/protocol';
import { assertStoreWritable, claimOwnership, readOwner, releaseOwnership, removeMigrationFiles } from '../store';
import { TIMEOUTS } from '../temporal-config';
import type {
  CreateVmInput,
  HostActivities,
  MigrationRefInput,
  PrepareDestinationInput,
  PrepareSourceInput,
  PrepareSourceResult,
  ReceivePagesInput,
  ReleaseSourceInput,
  SendRoundInput,
  SwitchoverInput,
  VmSummary,
} from './types';

/** What the activities need from their host. */
export interface HostDeps {
  hostId: string;
  driver: HypervisorDriver;
  natsUrl: string;
  /** Store directory used when a migration names none. */
  defaultStoreDir: string;
}

/** Failure types the workflow (and users) can match on. */
export const FAILURE_TYPES = {
  vmNotFound: 'VmNotFound',
  vmExists: 'VmExists',
  storeUnavailable: 'StoreUnavailable',
  notOwner: 'NotOwner',
  switchover: 'SwitchoverFailed',
  invalidInput: 'InvalidInput',
  migrationInProgress: 'MigrationInProgress',
} as const;

/** Maps known errors to non-retryable failures; everything else is retried by Temporal. */
function toFailure(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const byName: Record<string, string> = {
    VmNotFoundError: FAILURE_TYPES.vmNotFound,
    VmExistsError: FAILURE_TYPES.vmExists,
    StoreUnavailableError: FAILURE_TYPES.storeUnavailable,
    SwitchoverError: FAILURE_TYPES.switchover,
    InvalidVmSpecError: FAILURE_TYPES.invalidInput,
    MigrationInProgressError: FAILURE_TYPES.migrationInProgress,
    InvalidSizeError: FAILURE_TYPES.invalidInput,
  };
  const type = byName[err.name];
  if (type === undefined) return err;
  return ApplicationFailure.create({ message: err.message, type, nonRetryable: true, cause: err });
}

/** Runs `work` while heartbeating `details()` every second; stops on cancellation. */
async function withHeartbeat<T>(work: Promise<T>, details: () => Promise<unknown>): Promise<T> {
  const ctx = Context.current();
  let stopped = false;
  const beat = async (): Promise<void> => {
    while (!stopped) {
      ctx.heartbeat(await details().catch(() => undefined));
      await Promise.race([ctx.sleep(TIMEOUTS.heartbeatIntervalMs), work.catch(() => undefined)]);
    }
  };
  const beating = beat().catch(() => undefined);
  try {
    return await Promise.race([work, ctx.cancelled.then(() => work)]);
  } finally {
    stopped = true;
    await beating;
  }
}

/** Builds the activities of one host agent. */
export function createActivities(deps: HostDeps): HostActivities {
  const { driver, hostId } = deps;

  const vmm = async (vmId: string): Promise<VmmClient> => driver.control(vmId);
  const call = async <T>(vmId: string, method: string, params?: unknown): Promise<T> => {
    const client = await vmm(vmId);
    try {
      return await client.call<T>(method, params, { timeoutMs: 0 });
    } finally {
      client.close();
    }
  };
  const guarded =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toFailure(err);
      }
    };

  const activeMigrations = async (vmId: string, role: 'outgoing' | 'incoming'): Promise<string[]> =>
    (
      await call<{ migrationIds: string[] }>(
        vmId,
        role === 'outgoing' ? 'migration.activeOutgoing' : 'migration.activeIncoming',
      )
    ).migrationIds;

  const summarize = async (vmId: string): Promise<VmSummary | undefined> => {
    const record = await driver.getVm(vmId);
    if (!record) return undefined;
    const status = await call<{ vcpu: { state: string } }>(vmId, 'status').catch(() => ({
      vcpu: { state: 'unreachable' },
    }));
    return { ...record, state: status.vcpu.state };
  };

  return {
    prepareSource: guarded(async (input: PrepareSourceInput): Promise<PrepareSourceResult> => {
      const record = await driver.getVm(input.vmId);
      if (!record || record.mode !== 'run') {
        throw ApplicationFailure.nonRetryable(
          `VM ${input.vmId} is not running on host ${hostId}`,
          FAILURE_TYPES.vmNotFound,
        );
      }
      const other = (await activeMigrations(input.vmId, 'outgoing')).find((id) => id !== input.migrationId);
      if (other !== undefined) {
        throw ApplicationFailure.nonRetryable(
          `VM ${input.vmId} is already being migrated by ${other}`,
          FAILURE_TYPES.migrationInProgress,
        );
      }
      const storeDir = input.storeDir ?? deps.defaultStoreDir;
      await assertStoreWritable(storeDir);
      let owner = await readOwner(storeDir, input.vmId);
      if (!owner) {
        owner = (await claimOwnership(storeDir, { vmId: input.vmId, epoch: 1, hostId, migrationId: input.migrationId }))
          .record;
      }
      if (owner.hostId !== hostId) {
        throw ApplicationFailure.nonRetryable(
          `host ${hostId} does not own VM ${input.vmId}: the store records host ${owner.hostId} at epoch ${owner.epoch}`,
          FAILURE_TYPES.notOwner,
        );
      }
      return {
        pageCount: record.pageCount,
        memoryBytes: record.memoryBytes,
        storeDir,
        baseEpoch: owner.epoch,
        workload: record.workload,
      };
    }),

    prepareDestination: guarded(async (input: PrepareDestinationInput): Promise<void> => {
      const existing = await driver.getVm(input.vmId);
      if (existing && existing.mode === 'run') {
        throw ApplicationFailure.nonRetryable(
          `VM ${input.vmId} already runs on destination host ${hostId}`,
          FAILURE_TYPES.vmExists,
        );
      }
      const receiving = existing
        ? (await activeMigrations(input.vmId, 'incoming')).find((id) => id !== input.migrationId)
        : undefined;
      if (receiving !== undefined) {
        throw ApplicationFailure.nonRetryable(
          `host ${hostId} is already receiving VM ${input.vmId} for ${receiving}`,
          FAILURE_TYPES.migrationInProgress,
        );
      }
      await assertStoreWritable(input.storeDir);
      await driver.prepareIncoming(input.vmId, input.memoryBytes);
    }),

    receivePages: guarded(async (input: ReceivePagesInput): Promise<IncomingStatus> => {
      await call(input.vmId, 'migration.startIncoming', {
        migrationId: input.migrationId,
        natsUrl: deps.natsUrl,
        storeDir: input.storeDir,
        hostId,
        baseEpoch: input.baseEpoch,
        creditWindow: input.creditWindow,
      });
      const status = () =>
        call<IncomingStatus>(input.vmId, 'migration.incomingStatus', { migrationId: input.migrationId });
      const done = (async () => {
        for (;;) {
          const s = await status();
          if (s.state === 'resumed') return s;
          if (s.state === 'failed' || s.state === 'aborted') {
            throw ApplicationFailure.nonRetryable(
              `destination ${hostId} did not resume VM ${input.vmId}: ${s.reason ?? s.state}`,
              FAILURE_TYPES.switchover,
            );
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      try {
        return await withHeartbeat(done, status);
      } catch (err) {
        if (Context.current().cancellationSignal.aborted) {
          await call(input.vmId, 'migration.abortIncoming', { migrationId: input.migrationId }).catch(() => undefined);
        }
        throw err;
      }
    }),

    sendRound: guarded(async (input: SendRoundInput): Promise<RoundStats> => {
      await call(input.vmId, 'migration.startOutgoing', {
        migrationId: input.migrationId,
        natsUrl: deps.natsUrl,
        storeDir: input.storeDir,
        hostId,
        baseEpoch: input.baseEpoch,
        batchPages: input.batchPages,
      });
      const round = call<RoundStats>(input.vmId, 'migration.sendRound', {
        migrationId: input.migrationId,
        round: input.round,
      });
      return withHeartbeat(round, () =>
        call(input.vmId, 'migration.outgoingProgress', { migrationId: input.migrationId }),
      );
    }),

    switchover: guarded(async (input: SwitchoverInput): Promise<SwitchoverStats> =>
      call<SwitchoverStats>(input.vmId, 'migration.switchover', {
        migrationId: input.migrationId,
        resumeTimeoutMs: input.resumeTimeoutMs,
      }),
    ),

    rollbackSource: guarded(async (input: MigrationRefInput): Promise<{ running: boolean }> => {
      const result = await call<{ running: boolean }>(input.vmId, 'migration.abortOutgoing', {
        migrationId: input.migrationId,
      });
      return { running: result.running };
    }),

    abortDestination: guarded(async (input: MigrationRefInput): Promise<{ resumed: boolean }> => {
      const record = await driver.getVm(input.vmId);
      if (!record) return { resumed: false };
      const active = await activeMigrations(input.vmId, 'incoming').catch(() => [] as string[]);
      if (!active.includes(input.migrationId)) {
        // Not receiving for this migration: remove only an empty reservation nobody receives into,
        // never a VM that runs here or that another migration is filling.
        if (record.mode === 'incoming' && active.length === 0) await driver.destroyVm(input.vmId);
        return { resumed: false };
      }
      const status = await call<IncomingStatus>(input.vmId, 'migration.incomingStatus', {
        migrationId: input.migrationId,
      });
      if (status.state === 'resumed') {
        // Ownership moved here already: this copy is the VM now and must not be destroyed.
        if (record.mode === 'incoming') await driver.markRunning(input.vmId);
        return { resumed: true };
      }
      await call(input.vmId, 'migration.abortIncoming', { migrationId: input.migrationId });
      await driver.destroyVm(input.vmId);
      return { resumed: false };
    }),

    releaseSource: guarded(async (input: ReleaseSourceInput): Promise<void> => {
      if (!input.keepSource) await driver.destroyVm(input.vmId);
      await removeMigrationFiles(input.storeDir, input.migrationId);
    }),

    finishDestination: guarded(async (input: MigrationRefInput): Promise<void> => {
      await driver.markRunning(input.vmId);
    }),

    createVm: guarded(async (input: CreateVmInput): Promise<VmSummary> => {
      const spec = {
        vmId: input.vmId,
        memoryBytes: input.memoryBytes,
        workload: input.workload,
        ...(input.seed !== undefined ? { seed: input.seed } : {}),
      };
      // The VM id is registered in the shared store: one id, one owner, across all hosts.
      const owner = await readOwner(deps.defaultStoreDir, input.vmId);
      if (owner && owner.hostId !== hostId) {
        throw ApplicationFailure.nonRetryable(
          `VM ${input.vmId} already exists: the shared store records it on host ${owner.hostId}`,
          FAILURE_TYPES.vmExists,
        );
      }
      const record = await driver.createVm(spec);
      await claimOwnership(deps.defaultStoreDir, {
        vmId: input.vmId,
        epoch: (owner?.epoch ?? 0) + 1,
        hostId,
        migrationId: 'created',
      });
      return (await summarize(record.vmId)) ?? { ...record, state: 'unknown' };
    }),

    listVms: guarded(async (): Promise<VmSummary[]> => {
      const records = await driver.listVms();
      const out: VmSummary[] = [];
      for (const r of records) out.push((await summarize(r.vmId)) ?? { ...r, state: 'gone' });
      return out;
    }),

    destroyVm: guarded(async ({ vmId }: { vmId: string }): Promise<void> => {
      await driver.destroyVm(vmId);
      // A VM destroyed by its owner is gone; a stunned source copy destroyed after a migration
      // leaves the new owner's record alone.
      await releaseOwnership(deps.defaultStoreDir, vmId, hostId);
    }),

    dumpVmMemory: guarded(async ({ vmId, path }: { vmId: string; path: string }) => {
      if (!(await driver.getVm(vmId)))
        throw ApplicationFailure.nonRetryable(`VM ${vmId} is not on host ${hostId}`, FAILURE_TYPES.vmNotFound);
      await call(vmId, 'dumpMemory', { path });
      const status = await call<{ vcpu: { state: string; pagesWritten: number } }>(vmId, 'status');
      return { state: status.vcpu.state, pagesWritten: status.vcpu.pagesWritten };
    }),
  };
}
