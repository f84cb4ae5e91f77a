/**
 * The convergence benchmark's plots: for one migration per policy — the first run of the 2×
 * scenario with the biggest hot set, and for `history` its second migration — dirty rate, send
 * rate and guest write rate per round against the throttle, as SVG files next to the JSON.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ThrottlePolicy } from '../workflows/throttle-policy';
import type { ConvergenceRun, MigrationFigures } from './convergence-run';
import { plottedScenario, type ConvergenceScenario } from './convergence-scenarios';
import { lineChartSvg, type LineChart } from './plot-svg';

/** A plot written next to the JSON. */
export interface ConvergencePlot {
  policy: ThrottlePolicy;
  scenario: string;
  run: number;
  /** 1, or 2 for history's migration back. */
  migration: 1 | 2;
  /** File name in the results directory. */
  file: string;
}

const MB = 1e6;

function chartOf(scenario: ConvergenceScenario, run: ConvergenceRun, m: MigrationFigures, which: 1 | 2): LineChart {
  const rounds = m.roundsDetail;
  const series = (pick: (r: (typeof rounds)[number]) => number) => rounds.map((r) => ({ x: r.round, y: pick(r) }));
  const lastRound = rounds[rounds.length - 1]?.round ?? 0;
  const outcome =
    m.outcome === 'completed'
      ? `converged in ${m.rounds} rounds, downtime ${m.downtimeMs.toFixed(0)} ms`
      : `${m.outcome} after ${m.rounds} rounds`;
  const leg =
    run.policy === 'history' ? ` (migration ${which}, ${m.from}→${m.to}, started at ${m.startThrottlePercent}%)` : '';
  return {
    title: `${run.policy}${leg}: ${scenario.name}`,
    subtitle:
      `guest asked to write ${(scenario.askedWriteRateBytesPerSec / MB).toFixed(0)} MB/s into a ` +
      `${(scenario.hotSetBytes / 2 ** 20).toFixed(0)} MiB hot set; ${outcome}; ` +
      `work lost ${m.throttledMs} ms (${(m.workLostShare * 100).toFixed(1)}%)`,
    xLabel: 'pre-copy round',
    leftLabel: 'MB/s',
    rightLabel: 'throttle (% of vCPU time)',
    rightMax: 100,
    series: [
      { name: 'send rate', axis: 'left', color: '#1f77b4', points: series((r) => r.throughputBytesPerSec / MB) },
      {
        name: 'dirty rate (distinct pages)',
        axis: 'left',
        color: '#d62728',
        points: series((r) => r.dirtyRateBytesPerSec / MB),
      },
      {
        name: 'guest write rate',
        axis: 'left',
        color: '#ff7f0e',
        points: series((r) => r.guestWriteRateBytesPerSec / MB),
      },
      {
        name: 'asked write rate',
        axis: 'left',
        color: '#ff7f0e',
        dashed: true,
        points: [
          { x: 0, y: scenario.askedWriteRateBytesPerSec / MB },
          { x: Math.max(1, lastRound), y: scenario.askedWriteRateBytesPerSec / MB },
        ],
      },
      { name: 'throttle % (measured)', axis: 'right', color: '#2ca02c', points: series((r) => r.throttlePercent) },
    ],
  };
}

/**
 * Writes the plots into `dir`, named `<stamp>-convergence-<policy>.svg`; returns what it wrote
 * (nothing if the run had no 2× scenario).
 */
export function writeConvergencePlots(
  dir: string,
  stamp: string,
  scenarios: readonly ConvergenceScenario[],
  runs: readonly ConvergenceRun[],
): ConvergencePlot[] {
  const scenario = plottedScenario(scenarios);
  if (!scenario) return [];
  const plots: ConvergencePlot[] = [];
  for (const run of runs) {
    if (run.scenario !== scenario.name || plots.some((p) => p.policy === run.policy)) continue;
    const which = run.policy === 'history' ? 2 : 1;
    const migration = run.migrations[which - 1];
    if (!migration) continue;
    const file = `${stamp}-convergence-${run.policy}.svg`;
    fs.writeFileSync(path.join(dir, file), lineChartSvg(chartOf(scenario, run, migration, which)));
    plots.push({ policy: run.policy, scenario: scenario.name, run: run.run, migration: which, file });
  }
  return plots;
}
