/**
 * The soak's report: one row per migration and a summary, as a table for people or as one JSON
 * object for scripts (`--json`). The summary's keys are the issue's: migrations, completed,
 * rolledBack, corruptedPages, twoCopiesEvents and the extra time faults cost, and, per forged-message
 * fault, how many forged messages were sent and how many the hosts rejected.
 */
import type { SoakOutcome } from './faults';
import type { SoakRow } from './run-migration';

/** What one forged-message fault sent and what the hosts rejected, over its migrations. */
export interface ForgeryTotals {
  fault: string;
  /** Migrations that drew it (missed ones included). */
  migrations: number;
  /** Of those, migrations where it forged at least one message. */
  forgedIn: number;
  forged: number;
  rejected: number;
}

/** The soak's totals over the faulted migrations (the baseline runs are only the time reference). */
export interface SoakSummary {
  seed: number;
  migrations: number;
  completed: number;
  rolledBack: number;
  cancelled: number;
  failedVmLost: number;
  /** Failed in another way: the VM runs somewhere, but not as a rollback or a completion. */
  failed: number;
  hung: number;
  /** Timed faults that came due after their moment and were not injected (their runs count as fault-free). */
  missedFaults: number;
  /** Migrations whose outcome the fault does not allow, or where a check found a problem. */
  unexpected: number;
  corruptedPages: number;
  twoCopiesEvents: number;
  /** Forged messages sent and rejected, per forged-message fault drawn. */
  rejectedByFault: ForgeryTotals[];
  baselineMeanMs: number;
  faultedMeanMs: number;
  /** Mean faulted time minus mean baseline time (ms). */
  extraMs: number;
  /** Mean faulted time over mean baseline time. */
  extraRatio: number;
  /** Faults of the list left out of the draw, and why. */
  faultsSkipped: string[];
}

/** Everything the soak prints with `--json`. */
export interface SoakReport extends SoakSummary {
  baseline: SoakRow[];
  rows: SoakRow[];
}

function mean(values: number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * What is wrong with a forging fault that struck at its moment, given the messages it forged and
 * the migration's rejected count, or undefined: it must have forged something, and a completed
 * migration must have counted at least one rejected message (other outcomes are judged as such).
 */
export function forgeryProblem(forged: number, rejected: number, outcome: SoakOutcome): string | undefined {
  if (forged === 0) return 'the fault forged nothing: no forged message was sent';
  if (outcome === 'completed' && rejected === 0) return `${forged} forged messages sent, none counted as rejected`;
  return undefined;
}

/** Forged and rejected messages per forged-message fault among `rows`, in the order first drawn. */
export function forgeryTotals(rows: readonly SoakRow[]): ForgeryTotals[] {
  const totals = new Map<string, ForgeryTotals>();
  for (const r of rows) {
    if (r.forgedMessages === undefined) continue;
    const t = totals.get(r.fault) ?? { fault: r.fault, migrations: 0, forgedIn: 0, forged: 0, rejected: 0 };
    t.migrations += 1;
    t.forgedIn += r.forgedMessages > 0 ? 1 : 0;
    t.forged += r.forgedMessages;
    t.rejected += r.rejectedMessages;
    totals.set(r.fault, t);
  }
  return [...totals.values()];
}

/** Totals of `rows` against the `baseline` runs. */
export function summarize(seed: number, baseline: SoakRow[], rows: SoakRow[], faultsSkipped: string[]): SoakReport {
  const count = (outcome: SoakRow['outcome']) => rows.filter((r) => r.outcome === outcome).length;
  const baselineMeanMs = Math.round(mean(baseline.map((r) => r.totalMs)));
  const faultedMeanMs = Math.round(mean(rows.map((r) => r.totalMs)));
  return {
    seed,
    migrations: rows.length,
    completed: count('completed'),
    rolledBack: count('rolledBack'),
    cancelled: count('cancelled'),
    failedVmLost: count('failedVmLost'),
    failed: count('failed'),
    hung: count('hung'),
    missedFaults: rows.filter((r) => r.missed).length,
    unexpected: [...baseline, ...rows].filter((r) => !r.expected).length,
    corruptedPages: [...baseline, ...rows].reduce((sum, r) => sum + r.corruptedPages, 0),
    twoCopiesEvents: [...baseline, ...rows].reduce((sum, r) => sum + r.twoCopiesEvents, 0),
    rejectedByFault: forgeryTotals(rows),
    baselineMeanMs,
    faultedMeanMs,
    extraMs: faultedMeanMs - baselineMeanMs,
    extraRatio: baselineMeanMs > 0 ? Number((faultedMeanMs / baselineMeanMs).toFixed(2)) : 0,
    faultsSkipped,
    baseline,
    rows,
  };
}

const COLUMNS: { title: string; width: number; cell(r: SoakRow, i: number): string }[] = [
  { title: '#', width: 3, cell: (_, i) => String(i + 1) },
  { title: 'fault', width: 25, cell: (r) => r.fault },
  { title: 'moment', width: 34, cell: (r) => r.moment },
  { title: 'route', width: 6, cell: (r) => `${r.sourceHost}>${r.destinationHost}` },
  { title: 'enc', width: 3, cell: (r) => (r.encrypted ? 'yes' : '-') },
  { title: 'outcome', width: 12, cell: (r) => r.outcome },
  { title: 'runningOn', width: 9, cell: (r) => r.runningOn },
  { title: 'total ms', width: 8, cell: (r) => String(r.totalMs) },
  { title: 'paused ms', width: 9, cell: (r) => String(r.longestNoCopyMs) },
  { title: 'corrupt', width: 7, cell: (r) => String(r.corruptedPages) },
  { title: 'forged/rej', width: 10, cell: (r) => `${r.forgedMessages ?? '-'}/${r.rejectedMessages}` },
  { title: 'copies', width: 6, cell: (r) => String(r.copiesRunning) },
  { title: 'check', width: 10, cell: (r) => (r.expected ? 'ok' : 'UNEXPECTED') },
];

function tableLines(rows: SoakRow[]): string[] {
  const line = (cells: string[]) =>
    cells
      .map((c, k) => c.padEnd(COLUMNS[k]?.width ?? 0))
      .join('  ')
      .trimEnd();
  const out = [line(COLUMNS.map((c) => c.title))];
  rows.forEach((r, i) => {
    out.push(line(COLUMNS.map((c) => c.cell(r, i))));
    if (!r.expected) {
      const why = [`workflow ${r.workflowOutcome}${r.reason ? `: ${r.reason}` : ''}`, ...r.problems];
      for (const text of why) out.push(`     ! ${text}`);
    }
  });
  return out;
}

/** The report as text: baseline table, soak table, summary. */
export function formatReport(report: SoakReport): string {
  const s = report;
  return [
    'baseline (no fault):',
    ...tableLines(s.baseline),
    '',
    `soak (seed ${s.seed}):`,
    ...tableLines(s.rows),
    '',
    `migrations       ${s.migrations}`,
    `completed        ${s.completed}`,
    `rolledBack       ${s.rolledBack}`,
    `cancelled        ${s.cancelled}`,
    `failedVmLost     ${s.failedVmLost}`,
    `failed (other)   ${s.failed}`,
    `hung             ${s.hung}`,
    `missed faults    ${s.missedFaults}`,
    `unexpected       ${s.unexpected}`,
    `corruptedPages   ${s.corruptedPages} (must be 0)`,
    `twoCopiesEvents  ${s.twoCopiesEvents} (must be 0)`,
    ...s.rejectedByFault.map(
      (t) =>
        `rejected ${t.fault.padEnd(18)} ${t.rejected} of ${t.forged} forged (forged in ${t.forgedIn} of ${t.migrations} migrations)`,
    ),
    `baseline mean    ${s.baselineMeanMs} ms`,
    `faulted mean     ${s.faultedMeanMs} ms`,
    `extra time       ${s.extraMs} ms (x${s.extraRatio})`,
    ...(s.faultsSkipped.length > 0 ? [`faults skipped   ${s.faultsSkipped.join('; ')}`] : []),
  ].join('\n');
}

/** True when the soak passed: no corrupt page, never two copies, every outcome as expected. */
export function soakPassed(report: SoakSummary): boolean {
  return report.corruptedPages === 0 && report.twoCopiesEvents === 0 && report.unexpected === 0;
}
