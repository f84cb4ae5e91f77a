/**
 * The convergence benchmark's printed report: the send rate the scenarios were scaled from, one
 * table row per scenario × policy (means over the runs; history's two migrations on rows of their
 * own), and the targets' verdicts with the numbers behind them.
 */
import type { ConvergenceSummary } from './convergence';
import type { ConvergenceRow } from './convergence-summary';

interface Column {
  title: string;
  value(r: ConvergenceRow): string;
}

const mbps = (bytesPerSec: number): string => (bytesPerSec / 1e6).toFixed(0);
const fixed = (value: number, digits: number): string => (Number.isNaN(value) ? '-' : value.toFixed(digits));

const COLUMNS: Column[] = [
  { title: 'scenario'.padEnd(11), value: (r) => r.scenario },
  {
    title: 'policy'.padEnd(13),
    value: (r) => (r.policy === 'history' ? `history ${r.migration === 1 ? '1st' : '2nd'}` : r.policy),
  },
  { title: 'conv', value: (r) => `${r.converged}/${r.runs}` },
  { title: 'rounds', value: (r) => fixed(r.roundsMean, 1) },
  { title: 'total s', value: (r) => fixed(r.totalMeanMs / 1000, 1) },
  { title: 'downtime ms', value: (r) => fixed(r.downtimeMeanMs, 1) },
  { title: 'max down', value: (r) => (Number.isFinite(r.downtimeMaxMs) ? r.downtimeMaxMs.toFixed(0) : '-') },
  { title: 'MB sent', value: (r) => fixed(r.bytesViaNetworkMean / 1e6, 0) },
  { title: 'lost ms', value: (r) => fixed(r.throttledMeanMs, 0) },
  { title: 'lost %', value: (r) => fixed(r.workLostShareMean * 100, 1) },
  {
    title: 'max/final thr %',
    value: (r) => `${fixed(r.maxThrottleMeanPercent, 0)}/${fixed(r.finalThrottleMeanPercent, 0)}`,
  },
  {
    title: 'write MB/s asked/got',
    value: (r) => `${mbps(r.askedWriteRateBytesPerSec)}/${mbps(r.achievedWriteRateMeanBytesPerSec)}`,
  },
];

function table(rows: readonly ConvergenceRow[]): string[] {
  const cell = (column: Column, text: string, index: number): string =>
    index < 2 ? text.padEnd(column.title.length) : text.padStart(column.title.length);
  const line = (cells: string[]): string => cells.join('  ');
  const lines = [line(COLUMNS.map((c) => c.title))];
  rows.forEach((r, i) => {
    if (i > 0 && rows[i - 1]?.scenario !== r.scenario) lines.push('');
    lines.push(line(COLUMNS.map((c, index) => cell(c, c.value(r), index))));
  });
  return lines;
}

/** The printed lines of the convergence part. */
export function convergenceReportLines(s: ConvergenceSummary): string[] {
  const hotSets =
    s.scenarioSet === 'full'
      ? 'hot sets 128 and 512 MiB at every rate'
      : 'reduced set: hot sets 128 and 512 MiB at 2× and 4×, 256 MiB at 0.5× and 1×';
  const lines = [
    `== convergence (directory store, ${s.memoryBytes / 2 ** 20} MiB guest, ${s.runs} run(s), max ${s.maxRounds} rounds, ` +
      `downtime limit ${s.downtimeLimitMs} ms, abort on give-up)`,
    `send rate S = ${mbps(s.sendRateBytesPerSec)} MB/s (round 0 of an idle guest, policy none); round-0 send rates of the ` +
      `scenario migrations: median ${mbps(s.roundZeroSendRateMedianBytesPerSec)} MB/s`,
    `scenarios: guest write rate 0.5×, 1×, 2×, 4× S; ${hotSets}${s.memoryBytes < 2 ** 30 ? ' (scaled to the guest)' : ''}`,
    `page-by-page checks of completed migrations: ${s.pageChecks.ok} of ${s.pageChecks.checked} ok`,
    ...table(s.rows),
    'targets (from this run, not asserted):',
  ];
  for (const t of s.targets) lines.push(`${t.verdict} (${t.id}) ${t.target}`, ...t.lines.map((l) => `    ${l}`));
  if (s.plots.length > 0) lines.push(`plots: ${s.plots.map((p) => p.file).join(', ')}`);
  return lines;
}
