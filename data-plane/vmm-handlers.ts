/**
 * The migration engine's methods on a VMM's control socket. The host agent's activities call these;
 * the pages themselves move inside the VMM process, never through the agent or Temporal.
 * Every method is idempotent: starting twice returns the running migration, a round or switchover
 * asked for twice answers from the first run.
 */
import type { VmmContext, VmmHandler } from '../vmm/extensions';
import { IncomingMigration } from './incoming-migration';
import { OutgoingMigration } from './outgoing-migration';
import { MigrationInProgressError, UnknownMigrationError } from './errors';
import { FaultPoints } from './fault-points';
import type { IncomingStartInput, OutgoingStartInput, RoundThrottleInput } from './protocol';

interface MigrationRef {
  migrationId: string;
}

/** Builds the `migration.*` handlers for one VMM process. */
export function migrationHandlers(ctx: VmmContext): Record<string, VmmHandler> {
  const outgoing = new Map<string, Promise<OutgoingMigration>>();
  const incoming = new Map<string, Promise<IncomingMigration>>();
  const faults = new FaultPoints((msg) => ctx.log(msg));

  const getOutgoing = async (id: string): Promise<OutgoingMigration> => {
    const migration = outgoing.get(id);
    if (!migration) throw new UnknownMigrationError(id, 'outgoing');
    return migration;
  };
  const getIncoming = async (id: string): Promise<IncomingMigration> => {
    const migration = incoming.get(id);
    if (!migration) throw new UnknownMigrationError(id, 'incoming');
    return migration;
  };

  return {
    // Test and soak hook: see fault-points.ts.
    'migration.armFault': async (params) => faults.arm(params),
    'migration.activeOutgoing': async () => ({ migrationIds: [...outgoing.keys()] }),
    'migration.activeIncoming': async () => ({ migrationIds: [...incoming.keys()] }),
    'migration.startOutgoing': async (params) => {
      const input = params as OutgoingStartInput;
      const other = [...outgoing.keys()].find((id) => id !== input.migrationId);
      if (other !== undefined) throw new MigrationInProgressError(ctx.vmId, other);
      let started = outgoing.get(input.migrationId);
      if (!started) {
        started = OutgoingMigration.start(ctx, input, faults);
        outgoing.set(input.migrationId, started);
        started.catch(() => outgoing.delete(input.migrationId));
      }
      const migration = await started;
      return { state: migration.state };
    },
    'migration.sendRound': async (params) => {
      const { migrationId, round, storeFirst, throttle } = params as MigrationRef & {
        round: number;
        storeFirst?: boolean;
        throttle?: RoundThrottleInput;
      };
      return (await getOutgoing(migrationId)).sendRound(round, storeFirst === true, throttle);
    },
    'migration.setThrottle': async (params) => {
      const { migrationId, percent } = params as MigrationRef & { percent: number };
      return (await getOutgoing(migrationId)).requestThrottle(percent);
    },
    'migration.outgoingProgress': async (params) =>
      (await getOutgoing((params as MigrationRef).migrationId)).progress(),
    'migration.switchover': async (params) => {
      const { migrationId, resumeTimeoutMs } = params as MigrationRef & { resumeTimeoutMs: number };
      return (await getOutgoing(migrationId)).switchover(resumeTimeoutMs);
    },
    'migration.settleOutgoing': async (params) => {
      await (await getOutgoing((params as MigrationRef).migrationId)).storeSettled();
      return { settled: true };
    },
    'migration.abortOutgoing': async (params) => {
      const { migrationId } = params as MigrationRef;
      const started = outgoing.get(migrationId);
      if (!started) return { known: false, running: ctx.vcpu.stats().state === 'running' };
      const migration = await started;
      // Forgotten only once closed: a close that failed (the store unreachable) can be asked again.
      await migration.close();
      outgoing.delete(migrationId);
      return { known: true, state: migration.state, running: ctx.vcpu.stats().state === 'running' };
    },
    'migration.startIncoming': async (params) => {
      const input = params as IncomingStartInput;
      const other = [...incoming.keys()].find((id) => id !== input.migrationId);
      if (other !== undefined) throw new MigrationInProgressError(ctx.vmId, other);
      let started = incoming.get(input.migrationId);
      if (!started) {
        started = IncomingMigration.start(ctx, input, faults);
        incoming.set(input.migrationId, started);
        started.catch(() => incoming.delete(input.migrationId));
      }
      return (await started).snapshot();
    },
    'migration.incomingStatus': async (params) => (await getIncoming((params as MigrationRef).migrationId)).snapshot(),
    'migration.settleIncoming': async (params) => (await getIncoming((params as MigrationRef).migrationId)).settle(),
    'migration.abortIncoming': async (params) => {
      const { migrationId } = params as MigrationRef;
      const started = incoming.get(migrationId);
      if (!started) return { known: false };
      const migration = await started;
      // A source that committed the handover and then died leaves the VM to this side: settle
      // before aborting, so the only copy is not thrown away (the epoch still guards a live source).
      await migration.settle();
      incoming.delete(migrationId);
      await migration.close();
      return { known: true, state: migration.snapshot().state };
    },
  };
}
