/**
 * The host agent's activities, built by `createActivities(deps)` so tests can hand in another
 * driver or store: the migration activities (migration-activities.ts) and the VM administration
 * ones (vm-activities.ts), over helpers shared in host-context.ts, plus `ping`.
 *
 * Every activity that does not heartbeat its own progress heartbeats while it runs, so that the
 * workflow's heartbeat timeout notices a killed agent within seconds and retries the step (each is
 * idempotent) on the agent that replaces it, instead of waiting out the step's whole timeout.
 */
import { Context } from '@temporalio/activity';
import { TIMEOUTS } from '../temporal-config';
import { createHostContext, type HostDeps } from './host-context';
import { createMigrationActivities } from './migration-activities';
import { createVmActivities } from './vm-activities';
import type { HostActivities, LeaseActivities } from './types';

/** Activities that heartbeat their own progress (checkpoints a retry reads back): left as they are. */
const SELF_HEARTBEATING: ReadonlySet<string> = new Set(['receivePages', 'sendRound', 'switchover']);

/** Builds the activities of one host agent. */
export function createActivities(deps: HostDeps): HostActivities & LeaseActivities {
  const host = createHostContext(deps);
  const activities: HostActivities & LeaseActivities = {
    ...createMigrationActivities(host),
    ...createVmActivities(host),
    ping: async () => ({ hostId: deps.hostId }),
  };
  return Object.fromEntries(
    Object.entries(activities).map(([name, fn]) => [
      name,
      SELF_HEARTBEATING.has(name) ? fn : keptAlive(fn as (...args: unknown[]) => Promise<unknown>),
    ]),
  ) as unknown as HostActivities & LeaseActivities;
}

/** `fn` heartbeating every TIMEOUTS.heartbeatIntervalMs while it runs (outside an activity: as is). */
function keptAlive<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A): Promise<R> => {
    let ctx: Context;
    try {
      ctx = Context.current();
    } catch {
      return fn(...args);
    }
    const timer = setInterval(() => ctx.heartbeat(), TIMEOUTS.heartbeatIntervalMs);
    try {
      ctx.heartbeat();
      return await fn(...args);
    } finally {
      clearInterval(timer);
    }
  };
}
