/**
 * One run of the convergence benchmark: a fresh hot-set guest on h1 migrated under one throttle
 * policy with the source kept stunned, then both copies compared page by page and destroyed. A
 * `history` run is two migrations of the same VM: out to h2 (the store has no record of a fresh
 * vmId, so it starts as sdps and leaves the record at its end), then back (it starts from the
 * recorded throttle); the stunned copy the first one kept is destroyed before the VM goes back.
 * A migration that does not converge within the round limit is aborted and recorded, not thrown.
 */
import type { FerryClient } from '../cli/ferry-client';
import { compareMigratedMemory } from '../verification';
import type { ThrottlePolicy } from '../workflows/throttle-policy';
import type { MigrationOutcome, MigrationResult, RoundSummary } from '../workflows/types';
import type { ConvergenceScenario } from './convergence-scenarios';
import { CONVERGENCE_DOWNTIME_LIMIT_MS, CONVERGENCE_MAX_ROUNDS } from './convergence-scenarios';

/** What one migration measured. */
export interface MigrationFigures {
  vmId: string;
  from: string;
  to: string;
  outcome: MigrationOutcome;
  /** Why it did not complete. */
  reason?: string;
  rounds: number;
  totalMs: number;
  /** 0 unless it completed. */
  downtimeMs: number;
  bytesViaNetwork: number;
  /** vCPU time the throttle took during pre-copy (ms), and the share of the guest's work that was. */
  throttledMs: number;
  workLostShare: number;
  /** Throttle the first round started at, the highest, and the last round's (percent). */
  startThrottlePercent: number;
  maxThrottlePercent: number;
  finalThrottlePercent: number;
  /** Mean over the rounds of the guest's page writes per second (what the vCPU reached). */
  guestWriteRateBytesPerSec: number;
  /** Where the downtime went (see MigrationResult.switchover); absent unless it completed. */
  switchover?: MigrationResult['switchover'];
  /** Page-by-page check of a completed migration; null when there was nothing to check. */
  pageCheckOk: boolean | null;
  roundsDetail: RoundSummary[];
}

/** One scenario × policy × run: one migration, or two for `history`. */
export interface ConvergenceRun {
  scenario: string;
  policy: ThrottlePolicy;
  run: number;
  migrations: MigrationFigures[];
}

interface Cluster {
  ferry: FerryClient;
  stateDir: string;
}

async function migrate(ferry: FerryClient, vmId: string, from: string, to: string, policy: ThrottlePolicy) {
  const workflowId = await ferry.startMigration({
    vmId,
    sourceHost: from,
    destinationHost: to,
    policy: {
      throttle: policy,
      maxRounds: CONVERGENCE_MAX_ROUNDS,
      downtimeLimitMs: CONVERGENCE_DOWNTIME_LIMIT_MS,
      onGiveUp: 'abort',
      keepSourceAfterSwitchover: true,
    },
  });
  return ferry.result(workflowId).then(
    (result) => ({ result, reason: undefined }),
    (error: unknown) => {
      // A migration that did not complete still has its rounds to report.
      const ended = (error as { result?: MigrationResult }).result;
      if (!ended) throw error;
      return { result: ended, reason: (error as Error).message };
    },
  );
}

/** Migrates `vmId` and, if it completed, checks the stunned source against the destination. */
async function migrateAndCheck(
  { ferry, stateDir }: Cluster,
  vmId: string,
  from: string,
  to: string,
  policy: ThrottlePolicy,
): Promise<MigrationFigures> {
  const { result, reason } = await migrate(ferry, vmId, from, to, policy);
  const completed = result.outcome === 'completed';
  const comparison = completed
    ? await compareMigratedMemory(ferry, { vmId, sourceHost: from, destinationHost: to, dir: `${stateDir}/dumps` })
    : undefined;
  const throttle = result.throttle;
  const rounds = result.rounds;
  return {
    vmId,
    from,
    to,
    outcome: result.outcome,
    ...(reason !== undefined ? { reason } : {}),
    rounds: rounds.length,
    totalMs: result.totalMs,
    downtimeMs: completed ? result.downtimeMs : 0,
    ...(result.switchover ? { switchover: result.switchover } : {}),
    bytesViaNetwork: result.bytesViaNetwork,
    throttledMs: throttle?.throttledMs ?? 0,
    workLostShare: throttle?.workLostShare ?? 0,
    startThrottlePercent: throttle?.startPercent ?? 0,
    maxThrottlePercent: throttle?.maxPercent ?? 0,
    finalThrottlePercent: throttle?.finalPercent ?? 0,
    guestWriteRateBytesPerSec:
      rounds.length > 0 ? rounds.reduce((sum, r) => sum + r.guestWriteRateBytesPerSec, 0) / rounds.length : 0,
    pageCheckOk: comparison
      ? comparison.ok && comparison.sourceState !== 'running' && result.verified
      : completed
        ? false
        : null,
    roundsDetail: rounds,
  };
}

/** Destroys `vmId` on `hosts`; a host that holds no copy (after a rollback) is no error. */
async function destroyEverywhere(ferry: FerryClient, vmId: string, hosts: string[], mustExist: string[]) {
  for (const host of hosts)
    await ferry.destroyVm(host, vmId).catch((error: unknown) => {
      if (mustExist.includes(host)) throw error;
    });
}

/** Runs `scenario` under `policy` once (twice migrated for `history`); see the module comment. */
export async function runConvergence(
  cluster: Cluster,
  scenario: ConvergenceScenario,
  policy: ThrottlePolicy,
  memoryBytes: number,
  run: number,
): Promise<ConvergenceRun> {
  const { ferry } = cluster;
  // vmIds take no dots (`0.5x`).
  const vmId = `conv-${scenario.name.replace(/\./g, '_')}-${policy}-${run}`;
  await ferry.createVm('h1', { vmId, memoryBytes, workload: scenario.workload, seed: 2000 + run });
  // Let the guest dirty its hot set before the first round, as a running guest would have.
  await new Promise((r) => setTimeout(r, 1_000));
  const first = await migrateAndCheck(cluster, vmId, 'h1', 'h2', policy);
  const migrations = [first];
  if (policy === 'history') {
    const runsOn = first.outcome === 'completed' ? 'h2' : 'h1';
    // The stunned source would stand in the way of the VM coming back to h1.
    if (runsOn === 'h2') await ferry.destroyVm('h1', vmId);
    migrations.push(await migrateAndCheck(cluster, vmId, runsOn, runsOn === 'h2' ? 'h1' : 'h2', policy));
  }
  const last = migrations[migrations.length - 1] as MigrationFigures;
  await destroyEverywhere(ferry, vmId, ['h1', 'h2'], last.outcome === 'completed' ? [last.from, last.to] : [last.from]);
  return { scenario: scenario.name, policy, run, migrations };
}

/** Migrates an idle guest of `memoryBytes` once without a throttle: its first round's send rate is S. */
export async function measureSendRate(cluster: Cluster, memoryBytes: number): Promise<MigrationFigures> {
  const vmId = 'conv-send-rate';
  await cluster.ferry.createVm('h1', { vmId, memoryBytes, workload: { type: 'idle' }, seed: 1999 });
  const figures = await migrateAndCheck(cluster, vmId, 'h1', 'h2', 'none');
  await destroyEverywhere(cluster.ferry, vmId, ['h1', 'h2'], figures.outcome === 'completed' ? ['h1', 'h2'] : ['h1']);
  return figures;
}
