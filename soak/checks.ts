/**
 * What the soak checks once a migration has ended: how it ended (from the workflow's result and
 * from which copies of the VM run), whether any page of the surviving guest is corrupt, and
 * whether the hosts agree with the result. Nothing here changes the cluster but a brief pause of
 * a vCPU while its memory is dumped or self-checked.
 */
import type { FerryClient } from '../cli/ferry-client';
import type { TestCluster } from '../harness/test-cluster';
import { compareMigratedMemory } from '../verification';
import type { VmmVerifyResult } from '../vmm/vmm-methods';
import type { MigrationResult } from '../workflows/types';
import type { SoakOutcome } from './faults';
import { liveVmm, runningCopies, vmmCall } from './vmm-probe';

/** A self-check reads all of memory with the vCPU paused: allow it time (ms). */
const VERIFY_TIMEOUT_MS = 30_000;

/** How a migration's workflow ended: its result (also for a failed one) and error, or that it hung. */
export interface MigrationEnd {
  result: MigrationResult | undefined;
  error: string | undefined;
  hung: boolean;
}

/** The verdict on one migration. */
export interface MigrationCheck {
  outcome: SoakOutcome;
  /** Hosts where a copy of the VM runs at the end. */
  runningHosts: string[];
  corruptedPages: number;
  /** What disagrees, beyond the outcome itself (a copy where the result says none, a bad digest…). */
  problems: string[];
}

/** The parties of one migration. */
export interface CheckTarget {
  cluster: TestCluster;
  ferry: FerryClient;
  vmId: string;
  sourceHost: string;
  destinationHost: string;
}

function classify(end: MigrationEnd, runningHosts: string[], sourceHost: string): SoakOutcome {
  if (end.hung) return 'hung';
  if (end.result?.outcome === 'completed') return 'completed';
  if (runningHosts.length === 0) return 'failedVmLost';
  if (end.result && runningHosts.length === 1 && runningHosts[0] === sourceHost)
    return end.result.outcome === 'cancelled' ? 'cancelled' : 'rolledBack';
  return 'failed';
}

async function badPagesOn(t: CheckTarget, hostId: string): Promise<number> {
  const answer = await vmmCall<VmmVerifyResult>(t.cluster.env, hostId, t.vmId, 'verify', {}, VERIFY_TIMEOUT_MS);
  return answer.badPages;
}

/** Corrupt pages of a completed migration, page by page against the kept source when it lives. */
async function checkCompleted(t: CheckTarget, result: MigrationResult, problems: string[]): Promise<number> {
  if (!result.verified) problems.push('the destination digest differs from the source digest at stun');
  if (!(await liveVmm(t.cluster.env, t.sourceHost, t.vmId))) {
    // The source died (a fault killed it): its stunned memory is gone, so the destination's own
    // page self-checks and the digest above are what is left to check.
    return badPagesOn(t, t.destinationHost);
  }
  const check = await compareMigratedMemory(t.ferry, {
    vmId: t.vmId,
    sourceHost: t.sourceHost,
    destinationHost: t.destinationHost,
    dir: `${t.cluster.env.stateDir}/dumps`,
  });
  problems.push(...check.details);
  if (check.sourceState === 'running') problems.push('the source vCPU runs after the switchover');
  return check.mismatched.length;
}

/** Checks the migration of `t.vmId` that ended as `end`; see MigrationCheck. */
export async function checkMigration(t: CheckTarget, end: MigrationEnd): Promise<MigrationCheck> {
  const runningHosts = await runningCopies(t.cluster.env, [t.sourceHost, t.destinationHost], t.vmId);
  const outcome = classify(end, runningHosts, t.sourceHost);
  const problems: string[] = [];
  if (!end.result && !end.hung) problems.push(`no migration result: ${end.error ?? 'unknown error'}`);
  if (end.result && runningHosts.join('+') !== (end.result.runningOn ?? '')) {
    const where = runningHosts.length > 0 ? `runs on ${runningHosts.join('+')}` : 'runs nowhere';
    problems.push(`the VM ${where} but the result says runningOn ${String(end.result.runningOn)}`);
  }
  let corruptedPages = 0;
  try {
    if (outcome === 'completed' && end.result) {
      if (!runningHosts.includes(t.destinationHost)) problems.push('completed, but no copy runs on the destination');
      corruptedPages = await checkCompleted(t, end.result, problems);
    } else if (outcome === 'rolledBack' || outcome === 'cancelled') {
      corruptedPages = await badPagesOn(t, t.sourceHost);
      if (await liveVmm(t.cluster.env, t.destinationHost, t.vmId))
        problems.push('the destination still holds a copy after the rollback');
    } else {
      for (const host of runningHosts) corruptedPages += await badPagesOn(t, host);
    }
  } catch (err) {
    problems.push(`memory check failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { outcome, runningHosts, corruptedPages, problems };
}
