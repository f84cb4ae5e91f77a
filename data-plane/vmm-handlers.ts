/**
 * The migration engine's methods on a VMM's control socket. The host agent's activities call these;
 * the pages themselves move inside the VMM process, never through the agent or Temporal.
 * Every method is idempotent: claiming or starting twice returns the running migration, a round or
 * switchover asked for twice answers from the first run.
 *
 * One migration per VM: the source side is claimed by one migration id from prepareSource on
 * (`migration.claimOutgoing`); another id is refused with VmAlreadyMigratingError until the claim is
 * released (abort, cleanup) or its lease lapses.
 *
 * Leases (migration-lease.ts): the claim and outgoing migration hold one, renewed by every call that
 * names the migration; when it lapses the throttle is lifted, the migration closed (the guest keeps
 * running here, or resumes if it still owns the VM) and the claim dropped. The destination side holds
 * one lease over its reservation and incoming migrations, renewed by every incoming call; when it
 * lapses, each incoming migration settles (a source that committed the handover leaves the VM here)
 * and closes, and a VMM that does not own its VM then shuts down: an empty reservation never
 * outlives its workflow, and a destination that took ownership and runs is never destroyed.
 */
import type { VmmContext, VmmHandler } from '../vmm/extensions';
import { IncomingMigration } from './incoming-migration';
import { OutgoingMigration } from './outgoing-migration';
import { MigrationInProgressError, UnknownMigrationError, VmAlreadyMigratingError } from './errors';
import { FaultPoints } from './fault-points';
import { MigrationLease, resolveLeaseTtlMs } from './migration-lease';
import { openNatsConnections } from './nats-connections';
import { servedEngineHandlers, type EngineMethod, type MigrationEngineState } from './engine-methods';
import type { EngineDeps } from './engine-deps';

export type { MigrationEngineState } from './engine-methods';

/** The migration that claimed this VM's source side, and its engine once a round started it. */
interface SourceClaim {
  migrationId: string;
  lease: MigrationLease;
  started?: Promise<OutgoingMigration>;
}

/**
 * Builds the `migration.*` handlers for one VMM process (their params checked: engine-methods.ts).
 * `deps` replaces the bus and the store the migrations use (engine-deps.ts); by default, NATS and
 * the store each migration names.
 */
export function migrationHandlers(ctx: VmmContext, deps: Partial<EngineDeps> = {}): Record<EngineMethod, VmmHandler> {
  let source: SourceClaim | undefined;
  const incoming = new Map<string, Promise<IncomingMigration>>();
  let destinationLease: MigrationLease | undefined;
  const faults = new FaultPoints((msg) => ctx.log(msg));

  const claimSource = (migrationId: string, leaseTtlMs: number | undefined): SourceClaim => {
    if (source && source.migrationId !== migrationId)
      throw new VmAlreadyMigratingError(ctx.vmId, source.migrationId, migrationId);
    if (source) {
      source.lease.renew();
      return source;
    }
    const claim: SourceClaim = {
      migrationId,
      lease: new MigrationLease(resolveLeaseTtlMs(leaseTtlMs), () => void lapseSource(claim)),
    };
    source = claim;
    ctx.log(`migration ${migrationId} claims this VM (lease ${claim.lease.ttlMs} ms)`);
    return claim;
  };
  const lapseSource = async (claim: SourceClaim): Promise<void> => {
    if (source !== claim) return;
    ctx.log(
      `the lease of migration ${claim.migrationId} lapsed (no renewal for ${claim.lease.ttlMs} ms): releasing it`,
    );
    try {
      await (await claim.started?.catch(() => undefined))?.expire();
      if (source === claim) source = undefined;
    } catch (err) {
      // Closing failed (the store unreachable): keep the claim and try again after another lease.
      ctx.log(`releasing migration ${claim.migrationId} failed, trying again later: ${String(err)}`);
      if (source === claim) claim.lease = new MigrationLease(claim.lease.ttlMs, () => void lapseSource(claim));
    }
  };
  const getOutgoing = async (id: string): Promise<OutgoingMigration> => {
    if (source?.migrationId !== id || !source.started) throw new UnknownMigrationError(id, 'outgoing');
    source.lease.renew();
    return source.started;
  };

  const renewDestination = (leaseTtlMs?: number): void => {
    if (destinationLease) destinationLease.renew();
    else destinationLease = new MigrationLease(resolveLeaseTtlMs(leaseTtlMs), () => void lapseDestination());
  };
  const closeIncoming = async (id: string, migration: IncomingMigration, settle = true): Promise<void> => {
    // A source that committed the handover and then died leaves the VM to this side: settle
    // before closing, so the only copy is not thrown away (the epoch still guards a live source).
    // Only a caller that knows the source runs the guest again skips it.
    if (settle) await migration.settle();
    incoming.delete(id);
    await migration.close();
    // Nothing left for a lease to guard: this VMM owns the VM and receives nothing.
    if (incoming.size === 0 && ctx.run.owner) {
      destinationLease?.cancel();
      destinationLease = undefined;
    }
  };
  const lapseDestination = async (): Promise<void> => {
    destinationLease = undefined;
    ctx.log('the lease of the incoming side lapsed: closing its migrations');
    for (const [id, started] of [...incoming]) {
      const migration = await started.catch(() => undefined);
      if (migration)
        await closeIncoming(id, migration).catch((err: unknown) => ctx.log(`closing ${id}: ${String(err)}`));
      else incoming.delete(id);
    }
    if (!ctx.run.owner) ctx.shutdown('the lease of this migration reservation lapsed before it took ownership');
  };
  const getIncoming = async (id: string): Promise<IncomingMigration> => {
    const migration = incoming.get(id);
    if (!migration) throw new UnknownMigrationError(id, 'incoming');
    renewDestination();
    return migration;
  };

  return servedEngineHandlers({
    // Test and soak hook: see fault-points.ts.
    'migration.armFault': async (params) => faults.arm(params),
    'migration.activeOutgoing': async () => ({ migrationIds: source ? [source.migrationId] : [] }),
    'migration.activeIncoming': async () => ({ migrationIds: [...incoming.keys()] }),
    'migration.describe': async (): Promise<MigrationEngineState> => ({
      outgoing: source
        ? {
            migrationId: source.migrationId,
            state: source.started ? ((await source.started.catch(() => undefined))?.state ?? 'failed') : 'claimed',
            leaseExpiresInMs: source.lease.expiresInMs(),
          }
        : null,
      incoming: { migrationIds: [...incoming.keys()], leaseExpiresInMs: destinationLease?.expiresInMs() ?? null },
      natsConnections: openNatsConnections(),
      owner: ctx.run.owner,
    }),
    'migration.claimOutgoing': async ({ migrationId, leaseTtlMs }) => {
      const claim = claimSource(migrationId, leaseTtlMs);
      return { migrationId: claim.migrationId, leaseTtlMs: claim.lease.ttlMs };
    },
    'migration.renewLease': async ({ migrationId, role, leaseTtlMs }) => {
      if (role === 'outgoing') {
        if (source?.migrationId !== migrationId) return { renewed: false };
        source.lease.renew();
        return { renewed: true };
      }
      // A reservation (no ownership yet) or a migration still receiving: both need their lease.
      if (ctx.run.owner && incoming.size === 0) return { renewed: false };
      renewDestination(leaseTtlMs);
      return { renewed: true };
    },
    'migration.startOutgoing': async (input) => {
      const claim = claimSource(input.migrationId, input.leaseTtlMs);
      if (!claim.started) {
        const started = OutgoingMigration.start(ctx, input, faults, deps);
        claim.started = started;
        started.catch(() => {
          if (claim.started === started) delete claim.started;
        });
      }
      const migration = await claim.started;
      return { state: migration.state };
    },
    'migration.sendRound': async ({ migrationId, round, storeFirst, throttle }) => {
      return (await getOutgoing(migrationId)).sendRound(round, storeFirst === true, throttle);
    },
    'migration.setThrottle': async ({ migrationId, percent }) =>
      (await getOutgoing(migrationId)).requestThrottle(percent),
    'migration.outgoingProgress': async ({ migrationId }) => (await getOutgoing(migrationId)).progress(),
    'migration.switchover': async ({ migrationId, resumeTimeoutMs }) =>
      (await getOutgoing(migrationId)).switchover(resumeTimeoutMs),
    'migration.settleOutgoing': async ({ migrationId }) => {
      await (await getOutgoing(migrationId)).storeSettled();
      return { settled: true };
    },
    'migration.abortOutgoing': async ({ migrationId }) => {
      const claim = source?.migrationId === migrationId ? source : undefined;
      if (!claim) return { known: false, running: ctx.vcpu.stats().state === 'running' };
      const migration = await claim.started?.catch(() => undefined);
      // Forgotten only once closed: a close that failed (the store unreachable) can be asked again.
      await migration?.close();
      claim.lease.cancel();
      if (source === claim) source = undefined;
      return {
        known: true,
        state: migration?.state ?? 'claimed',
        running: ctx.vcpu.stats().state === 'running',
      };
    },
    'migration.startIncoming': async (input) => {
      const other = [...incoming.keys()].find((id) => id !== input.migrationId);
      if (other !== undefined) throw new MigrationInProgressError(ctx.vmId, other);
      renewDestination(input.leaseTtlMs);
      let started = incoming.get(input.migrationId);
      if (!started) {
        started = IncomingMigration.start(ctx, input, faults, deps);
        incoming.set(input.migrationId, started);
        started.catch(() => incoming.delete(input.migrationId));
      }
      return (await started).snapshot();
    },
    'migration.incomingStatus': async ({ migrationId }) => (await getIncoming(migrationId)).snapshot(),
    'migration.settleIncoming': async ({ migrationId }) => (await getIncoming(migrationId)).settle(),
    'migration.abortIncoming': async ({ migrationId, settle }) => {
      const started = incoming.get(migrationId);
      if (!started) return { known: false };
      const migration = await started;
      await closeIncoming(migrationId, migration, settle !== false);
      return { known: true, state: migration.snapshot().state };
    },
  });
}
