/**
 * The migration activities of a host agent: the source's and the destination's sides of
 * `migrateVm`. Each is idempotent: the VMM-side methods they call answer a repeated request from
 * the first run, so a retry after an agent restart continues instead of starting over. Long
 * activities heartbeat every second with their progress and notice cancellation through it; on
 * cancellation the receiver stops its side and rethrows.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { IncomingStatus, RoundStats, SwitchoverStats } from '../model/protocol';
import { claimOwnership } from '../store/page-store';
import { deriveMigrationKey, loadClusterSecret, newKeyNonce } from '../data-plane/migration-key';
import { openPageStore } from '../store/open-store';
import { callEngine } from '../data-plane/engine-methods';
import { activityAttempt, FAILURE_TYPES, vmmExitedFailure, withHeartbeat, type HostContext } from './host-context';
import type {
  AbortDestinationInput,
  HostActivities,
  LeaseActivities,
  MigrationRefInput,
  PrepareDestinationInput,
  PrepareSourceInput,
  PrepareSourceResult,
  ReceivePagesInput,
  RecordVmHistoryInput,
  ReleaseSourceInput,
  RenewLeaseInput,
  SendRoundInput,
  SetSourceThrottleInput,
  StepReport,
  SwitchoverInput,
} from './types';

/** The activities that move a VM, by name. */
export type MigrationActivities = Omit<HostActivities, 'createVm' | 'listVms' | 'destroyVm' | 'dumpVmMemory' | 'ping'> &
  LeaseActivities;

/** Builds the migration activities of the host in `host`. */
export function createMigrationActivities(host: HostContext): MigrationActivities {
  const { driver, hostId, call, engine, guarded, activeMigrations } = host;
  // The key goes to the VMM over its local control socket only; it is never returned or logged.
  const migrationKey = (migrationId: string, keyNonce: string): string =>
    deriveMigrationKey(loadClusterSecret(host.clusterSecretFile), keyNonce, migrationId).toString('base64');
  return {
    prepareSource: guarded(async (input: PrepareSourceInput): Promise<PrepareSourceResult> => {
      let record = await driver.getVm(input.vmId);
      // A destination whose workflow ended before it recorded the takeover (finishDestination)
      // runs the VM all the same: its VMM says so; record it now.
      if (record?.mode === 'incoming' && (await call<{ mode: string }>(input.vmId, 'status')).mode === 'run') {
        await driver.markRunning(input.vmId);
        record = await driver.getVm(input.vmId);
      }
      if (!record || record.mode !== 'run') {
        throw ApplicationFailure.nonRetryable(
          `VM ${input.vmId} is not running on host ${hostId}`,
          FAILURE_TYPES.vmNotFound,
        );
      }
      // From here on the VM is this migration's (one migration per VM, whatever the workflow id):
      // the VMM refuses another migration id until the claim is released or its lease lapses.
      await engine(input.vmId, 'migration.claimOutgoing', {
        migrationId: input.migrationId,
        leaseTtlMs: host.leaseTtlMs,
      });
      // A store named by the migration is refused unless it lies under an allowed root.
      const storeRef = host.allowedStore(input.store ?? host.defaultStore);
      const store = openPageStore(storeRef);
      await store.assertWritable();
      let owner = await store.readOwner(input.vmId);
      if (!owner) {
        owner = (await claimOwnership(store, { vmId: input.vmId, epoch: 1, hostId, migrationId: input.migrationId }))
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
        ...(record.driver !== undefined && record.driver !== 'simulated' ? { driver: record.driver } : {}),
        ...(record.guestImageKey !== undefined ? { guestImageKey: record.guestImageKey } : {}),
        store: storeRef,
        baseEpoch: owner.epoch,
        workload: record.workload,
        leaseTtlMs: host.leaseTtlMs,
        keyNonce: newKeyNonce(),
        ...(input.readHistory ? { history: (await store.readVmHistory(input.vmId)) ?? null } : {}),
        activityAttempt: activityAttempt(),
      };
    }),

    prepareDestination: guarded(async (input: PrepareDestinationInput): Promise<StepReport> => {
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
      await openPageStore(host.allowedStore(input.store)).assertWritable();
      await driver.prepareIncoming(input.vmId, input.memoryBytes, input.driver ?? 'simulated', input.guestImageKey);
      // The reservation lives on the migration's lease: if its workflow ends without a word, the
      // VMM goes away by itself.
      await engine(input.vmId, 'migration.renewLease', {
        migrationId: input.migrationId,
        role: 'incoming',
        leaseTtlMs: host.leaseTtlMs,
      });
      return { activityAttempt: activityAttempt() };
    }),

    renewLease: guarded(async (input: RenewLeaseInput): Promise<{ renewed: boolean }> =>
      (await driver.getVm(input.vmId))
        ? engine(input.vmId, 'migration.renewLease', {
            migrationId: input.migrationId,
            role: input.role,
            leaseTtlMs: host.leaseTtlMs,
          })
        : { renewed: false },
    ),

    receivePages: guarded(async (input: ReceivePagesInput): Promise<IncomingStatus> => {
      // The destination VMM exists from prepareDestination on: if it is gone now, it exited.
      const call = <T>(vmId: string, method: string, params?: unknown): Promise<T> =>
        host.call<T>(vmId, method, params).catch((err: unknown) => {
          throw (err as Error | null)?.name === 'VmNotFoundError'
            ? vmmExitedFailure(vmId, hostId, 'the receiving of pages', err)
            : err;
        });
      const engine: HostContext['engine'] = (vmId, method, ...params) =>
        callEngine((name, p) => call(vmId, name, p), method, ...params);
      await engine(input.vmId, 'migration.startIncoming', {
        migrationId: input.migrationId,
        nats: host.nats,
        store: host.allowedStore(input.store),
        hostId,
        sourceHost: input.sourceHost,
        baseEpoch: input.baseEpoch,
        creditWindow: input.creditWindow,
        leaseTtlMs: host.leaseTtlMs,
        key: migrationKey(input.migrationId, input.keyNonce),
        ...(input.rebuildFromStore ? { rebuildFromStore: true } : {}),
      });
      const status = () => engine(input.vmId, 'migration.incomingStatus', { migrationId: input.migrationId });
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
        return { ...(await withHeartbeat(done, status)), activityAttempt: activityAttempt() };
      } catch (err) {
        if (Context.current().cancellationSignal.aborted) {
          await engine(input.vmId, 'migration.abortIncoming', { migrationId: input.migrationId }).catch(
            () => undefined,
          );
        }
        throw err;
      }
    }),

    sendRound: guarded(async (input: SendRoundInput): Promise<RoundStats> => {
      await engine(input.vmId, 'migration.startOutgoing', {
        migrationId: input.migrationId,
        nats: host.nats,
        store: host.allowedStore(input.store),
        hostId,
        destinationHost: input.destinationHost,
        baseEpoch: input.baseEpoch,
        batchPages: input.batchPages,
        leaseTtlMs: host.leaseTtlMs,
        key: migrationKey(input.migrationId, input.keyNonce),
        ...(input.encrypt ? { encrypt: true } : {}),
      });
      // The VMM runs each round once: a retry after an agent restart rejoins the round under way,
      // which has gone on from the last checkpoint this activity's heartbeats recorded.
      const { attempt, heartbeatDetails } = Context.current().info;
      const checkpoint = heartbeatDetails as { round?: number; pagesSent?: number } | undefined;
      const round = engine(input.vmId, 'migration.sendRound', {
        migrationId: input.migrationId,
        round: input.round,
        ...(input.storeFirst ? { storeFirst: true } : {}),
        ...(input.throttle ? { throttle: input.throttle } : {}),
      });
      // Each heartbeat is a checkpoint of this round; the progress call may overtake the sendRound
      // call (separate connections), in which case the round has sent nothing yet.
      const checkpointNow = async () => {
        const p = await engine(input.vmId, 'migration.outgoingProgress', { migrationId: input.migrationId });
        return p.round === input.round ? p : { ...p, round: input.round, pagesSent: 0, bytesSent: 0 };
      };
      const stats = await withHeartbeat(round, checkpointNow);
      return {
        ...stats,
        activityAttempt: attempt,
        ...(checkpoint?.round === input.round && typeof checkpoint.pagesSent === 'number'
          ? { resumedFromPagesSent: checkpoint.pagesSent }
          : {}),
      };
    }),

    switchover: guarded(async (input: SwitchoverInput): Promise<SwitchoverStats> => {
      const ref = { migrationId: input.migrationId };
      try {
        const switched = engine(input.vmId, 'migration.switchover', {
          ...ref,
          resumeTimeoutMs: input.resumeTimeoutMs,
        });
        return await withHeartbeat(switched, () => engine(input.vmId, 'migration.outgoingProgress', ref));
      } catch (err) {
        if ((err as { remoteName?: unknown }).remoteName !== 'SwitchoverError') throw err;
        // The workflow needs to know whether the source holds the VM again or is fenced off by the
        // destination's ownership epoch. It holds it if it rolled back, or if its guest runs: a
        // source that failed before the stun (its store down) never sent the final request, and one
        // that handed over never runs again (vmm/guest-run.ts).
        const [after, status] = await Promise.all([
          engine(input.vmId, 'migration.outgoingProgress', ref).catch(() => undefined),
          call<{ vcpu: { state: string } }>(input.vmId, 'status').catch(() => undefined),
        ]);
        throw ApplicationFailure.create({
          message: (err as Error).message,
          type: FAILURE_TYPES.switchover,
          nonRetryable: true,
          details: [{ rolledBack: after?.state === 'rolled-back' || status?.vcpu.state === 'running' }],
          cause: err as Error,
        });
      }
    }),

    rollbackSource: guarded(async (input: MigrationRefInput): Promise<{ running: boolean }> => {
      const result = await engine(input.vmId, 'migration.abortOutgoing', {
        migrationId: input.migrationId,
      });
      return { running: result.running };
    }),

    abortDestination: guarded(async (input: AbortDestinationInput): Promise<{ resumed: boolean }> => {
      const record = await driver.getVm(input.vmId);
      if (!record) return { resumed: false };
      const active = await activeMigrations(input.vmId, 'incoming').catch(() => [] as string[]);
      if (!active.includes(input.migrationId)) {
        // Not receiving for this migration: remove only an empty reservation nobody receives into,
        // never a VM that runs here or that another migration is filling.
        if (record.mode === 'incoming' && active.length === 0) await driver.destroyVm(input.vmId);
        return { resumed: false };
      }
      // The VMM settles before it aborts: a destination that finished (or finishes now, because the
      // source committed the handover in the page file and then died) owns the VM and stays. A
      // source whose guest runs again holds the VM: nothing to settle then.
      const aborted = await engine(input.vmId, 'migration.abortIncoming', {
        migrationId: input.migrationId,
        settle: input.sourceRuns !== true,
      });
      if (aborted.known && aborted.state === 'resumed') {
        if (record.mode === 'incoming') await driver.markRunning(input.vmId);
        return { resumed: true };
      }
      await driver.destroyVm(input.vmId);
      return { resumed: false };
    }),

    settleDestination: guarded(async (input: MigrationRefInput) => {
      const active = await activeMigrations(input.vmId, 'incoming').catch(() => [] as string[]);
      if (!active.includes(input.migrationId)) return { resumed: false };
      const status = await engine(input.vmId, 'migration.settleIncoming', {
        migrationId: input.migrationId,
      });
      return { resumed: status.state === 'resumed', status };
    }),

    releaseSource: guarded(async (input: ReleaseSourceInput): Promise<void> => {
      // A page file that is kept must be whole: a store that trails the stream catches up first.
      if (input.keepPageFile)
        await engine(input.vmId, 'migration.settleOutgoing', { migrationId: input.migrationId }).catch(() => undefined);
      if (!input.keepSource) await driver.destroyVm(input.vmId);
      // A kept source stops writing to the store before its files go, or its uploads would bring
      // some back.
      else
        await engine(input.vmId, 'migration.abortOutgoing', { migrationId: input.migrationId }).catch(() => undefined);
      if (!input.keepPageFile) await openPageStore(host.allowedStore(input.store)).removeMigration(input.migrationId);
    }),

    setSourceThrottle: guarded(async (input: SetSourceThrottleInput): Promise<{ percent: number }> =>
      engine(input.vmId, 'migration.setThrottle', {
        migrationId: input.migrationId,
        percent: input.percent,
      }),
    ),

    recordVmHistory: guarded(async (input: RecordVmHistoryInput): Promise<void> => {
      await openPageStore(host.allowedStore(input.store)).writeVmHistory(input.record);
    }),

    removeMigrationFiles: guarded(async (input: MigrationRefInput & { store: string }): Promise<void> => {
      await openPageStore(host.allowedStore(input.store)).removeMigration(input.migrationId);
    }),

    finishDestination: guarded(async (input: MigrationRefInput): Promise<void> => {
      await driver.markRunning(input.vmId);
      // The guest runs here: the receiver's connection, subscriptions and timers go now, not with
      // the lease. abortIncoming settles first, so it never stops a VM that runs.
      await engine(input.vmId, 'migration.abortIncoming', { migrationId: input.migrationId });
    }),
  };
}
