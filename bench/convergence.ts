/**
 * The convergence benchmark of issue 6, on one cluster of its own (directory store): it first
 * measures the send rate S in the same run (round 0 of an idle guest migrated without a
 * throttle), then migrates hot-set guests asked to write at 0.5×, 1×, 2× and 4× S under every
 * throttle policy (none, auto-converge, sdps, history), `runs` times each, the policies taking
 * turns within a run so that a change of the machine's load falls on all of them. Every
 * migration has the same round limit and aborts when it cannot converge; every completed one is
 * checked page by page. The cluster is stopped before this returns.
 */
import { FerryClient } from '../cli/ferry-client';
import { startTestCluster } from '../harness/test-cluster';
import { CONVERGENCE_POLICIES, CONVERGENCE_DOWNTIME_LIMIT_MS, CONVERGENCE_MAX_ROUNDS } from './convergence-scenarios';
import { convergenceScenarios, type ConvergenceScenario, type ScenarioSet } from './convergence-scenarios';
import { measureSendRate, runConvergence, type ConvergenceRun, type MigrationFigures } from './convergence-run';
import type { ConvergencePlot } from './convergence-plots';
import { convergenceRows, convergenceTargets, type ConvergenceRow, type TargetVerdict } from './convergence-summary';
import { median } from './store-summary';

/** How much to measure. */
export interface ConvergenceOptions {
  runs: number;
  memoryBytes: number;
  scenarioSet: ScenarioSet;
}

/** Everything the convergence part measured. */
export interface ConvergenceBench extends ConvergenceOptions {
  sendRateBytesPerSec: number;
  /** The idle migration S was taken from. */
  sendRateMigration: MigrationFigures;
  scenarios: ConvergenceScenario[];
  runsDetail: ConvergenceRun[];
}

/** The JSON's `convergence`: the measurements, the table's rows, the targets and the plots. */
export interface ConvergenceSummary extends ConvergenceBench {
  maxRounds: number;
  downtimeLimitMs: number;
  /** Round-0 send rate of every scenario migration, median: how far S drifted during the run. */
  roundZeroSendRateMedianBytesPerSec: number;
  pageChecks: { checked: number; ok: number };
  allPageChecksOk: boolean;
  rows: ConvergenceRow[];
  targets: TargetVerdict[];
  plots: ConvergencePlot[];
}

function logMigration(run: ConvergenceRun, m: MigrationFigures): void {
  const check = m.pageCheckOk === null ? 'not checked' : m.pageCheckOk ? 'check ok' : 'check FAILED';
  const rounds = m.roundsDetail.map(
    (r) =>
      `${(r.throughputBytesPerSec / 1e6).toFixed(0)}/${(r.dirtyRateBytesPerSec / 1e6).toFixed(0)}/` +
      `${(r.guestWriteRateBytesPerSec / 1e6).toFixed(0)}@${r.throttlePercent.toFixed(0)}%`,
  );
  process.stderr.write(
    `${run.scenario} ${run.policy} run ${run.run} ${m.from}→${m.to}: ${m.outcome}${m.reason ? ` (${m.reason})` : ''}, ` +
      `${m.rounds} rounds, total ${m.totalMs} ms, downtime ${m.downtimeMs.toFixed(1)} ms, lost ${m.throttledMs} ms ` +
      `(${(m.workLostShare * 100).toFixed(1)}%), ${check}\n  send/dirty/write MB/s @throttle: ${rounds.join(' ')}\n`,
  );
}

/** Runs the convergence part; see the module comment. Throws if the cluster or a check fails to run. */
export async function benchConvergence(options: ConvergenceOptions): Promise<ConvergenceBench> {
  const cluster = await startTestCluster(['h1', 'h2'], { store: 'directory' });
  const ferry = await FerryClient.connect(cluster.temporal.address);
  const target = { ferry, stateDir: cluster.env.stateDir };
  try {
    const sendRateMigration = await measureSendRate(target, options.memoryBytes);
    const sendRateBytesPerSec = sendRateMigration.roundsDetail[0]?.throughputBytesPerSec ?? 0;
    process.stderr.write(`send rate S = ${(sendRateBytesPerSec / 1e6).toFixed(0)} MB/s\n`);
    const scenarios = convergenceScenarios(options.scenarioSet, sendRateBytesPerSec, options.memoryBytes);
    const runsDetail: ConvergenceRun[] = [];
    for (const scenario of scenarios)
      for (let run = 0; run < options.runs; run += 1)
        for (const policy of CONVERGENCE_POLICIES) {
          const result = await runConvergence(target, scenario, policy, options.memoryBytes, run);
          result.migrations.forEach((m) => logMigration(result, m));
          runsDetail.push(result);
        }
    return { ...options, sendRateBytesPerSec, sendRateMigration, scenarios, runsDetail };
  } finally {
    await ferry.close();
    await cluster.stop();
  }
}

/** The summary of `bench` with the plots written from it. */
export function summarizeConvergence(bench: ConvergenceBench, plots: ConvergencePlot[]): ConvergenceSummary {
  const migrations = bench.runsDetail.flatMap((r) => r.migrations);
  const checked = [bench.sendRateMigration, ...migrations].filter((m) => m.pageCheckOk !== null);
  const ok = checked.filter((m) => m.pageCheckOk === true).length;
  const { sendRateMigration, runsDetail, ...options } = bench;
  // The detail last, so that the JSON reads top-down: figures, table, verdicts, then every round.
  return {
    ...options,
    maxRounds: CONVERGENCE_MAX_ROUNDS,
    downtimeLimitMs: CONVERGENCE_DOWNTIME_LIMIT_MS,
    roundZeroSendRateMedianBytesPerSec: median(migrations.map((m) => m.roundsDetail[0]?.throughputBytesPerSec ?? 0)),
    pageChecks: { checked: checked.length, ok },
    allPageChecksOk: ok === checked.length,
    rows: convergenceRows(bench.scenarios, runsDetail),
    targets: convergenceTargets(bench.scenarios, runsDetail),
    plots,
    sendRateMigration,
    runsDetail,
  };
}
