/**
 * The host agent's activities, built by `createActivities(deps)` so tests can hand in another
 * driver or store: the migration activities (migration-activities.ts) and the VM administration
 * ones (vm-activities.ts), over helpers shared in host-context.ts.
 */
import { createHostContext, type HostDeps } from './host-context';
import { createMigrationActivities } from './migration-activities';
import { createVmActivities } from './vm-activities';
import type { HostActivities, LeaseActivities } from './types';

/** Builds the activities of one host agent. */
export function createActivities(deps: HostDeps): HostActivities & LeaseActivities {
  const host = createHostContext(deps);
  return { ...createMigrationActivities(host), ...createVmActivities(host) };
}
