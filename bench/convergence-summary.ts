/**
 * The convergence benchmark summarised: one row per scenario × policy (two for `history`, its
 * first and second migration) with means over the runs, and the targets of issue 6 judged from
 * the same run. Downtime is a mean over completed migrations only (an aborted one has none); every
 * other figure is a mean over all runs, an aborted migration counting with what it cost up to
 * the abort. Targets are reported as PASS, FAIL or N/A, never asserted.
 */
import type { ThrottlePolicy } from '../workflows/throttle-policy';
import type { ConvergenceRun, MigrationFigures } from './convergence-run';
import { CONVERGENCE_POLICIES, CONVERGENCE_DOWNTIME_LIMIT_MS, type ConvergenceScenario } from './convergence-scenarios';

/** Means of one scenario × policy (× migration, for history). */
export interface ConvergenceRow {
  scenario: string;
  policy: ThrottlePolicy;
  /** 1, or 2 for history's migration back. */
  migration: 1 | 2;
  runs: number;
  converged: number;
  roundsMean: number;
  totalMeanMs: number;
  /** NaN when no run completed. */
  downtimeMeanMs: number;
  downtimeMaxMs: number;
  bytesViaNetworkMean: number;
  throttledMeanMs: number;
  workLostShareMean: number;
  maxThrottleMeanPercent: number;
  finalThrottleMeanPercent: number;
  achievedWriteRateMeanBytesPerSec: number;
  askedWriteRateBytesPerSec: number;
}

/** A target's verdict and the numbers behind it, one line per scenario. */
export interface TargetVerdict {
  id: 'a' | 'b' | 'c' | 'd';
  target: string;
  verdict: 'PASS' | 'FAIL' | 'N/A';
  lines: string[];
}

const mean = (values: number[]): number =>
  values.length === 0 ? NaN : values.reduce((sum, v) => sum + v, 0) / values.length;

function migrationsOf(runs: readonly ConvergenceRun[], scenario: string, policy: ThrottlePolicy, index: number) {
  return runs
    .filter((r) => r.scenario === scenario && r.policy === policy)
    .flatMap((r) => (r.migrations[index] ? [r.migrations[index]] : []));
}

function row(scenario: ConvergenceScenario, policy: ThrottlePolicy, migration: 1 | 2, ms: MigrationFigures[]) {
  const completed = ms.filter((m) => m.outcome === 'completed');
  return {
    scenario: scenario.name,
    policy,
    migration,
    runs: ms.length,
    converged: completed.length,
    roundsMean: mean(ms.map((m) => m.rounds)),
    totalMeanMs: mean(ms.map((m) => m.totalMs)),
    downtimeMeanMs: mean(completed.map((m) => m.downtimeMs)),
    downtimeMaxMs: completed.length > 0 ? Math.max(...completed.map((m) => m.downtimeMs)) : NaN,
    bytesViaNetworkMean: mean(ms.map((m) => m.bytesViaNetwork)),
    throttledMeanMs: mean(ms.map((m) => m.throttledMs)),
    workLostShareMean: mean(ms.map((m) => m.workLostShare)),
    maxThrottleMeanPercent: mean(ms.map((m) => m.maxThrottlePercent)),
    finalThrottleMeanPercent: mean(ms.map((m) => m.finalThrottlePercent)),
    achievedWriteRateMeanBytesPerSec: mean(ms.map((m) => m.guestWriteRateBytesPerSec)),
    askedWriteRateBytesPerSec: scenario.askedWriteRateBytesPerSec,
  };
}

/** The table's rows, scenario by scenario in the policies' order. */
export function convergenceRows(
  scenarios: readonly ConvergenceScenario[],
  runs: readonly ConvergenceRun[],
): ConvergenceRow[] {
  return scenarios.flatMap((s) =>
    CONVERGENCE_POLICIES.flatMap((policy) =>
      (policy === 'history' ? ([1, 2] as const) : ([1] as const)).map((m) =>
        row(s, policy, m, migrationsOf(runs, s.name, policy, m - 1)),
      ),
    ),
  );
}

function verdict(oks: boolean[]): TargetVerdict['verdict'] {
  if (oks.length === 0) return 'N/A';
  return oks.every(Boolean) ? 'PASS' : 'FAIL';
}

const marked = (x: { ok: boolean; line: string }): string => `${x.ok ? 'ok  ' : 'FAIL'} ${x.line}`;
const ms = (value: number): string => (Number.isNaN(value) ? '-' : value.toFixed(0));
const pct = (share: number): string => `${(share * 100).toFixed(1)}%`;

/** Targets (a)–(d) of issue 6 judged from `runs`; see the module comment. */
export function convergenceTargets(
  scenarios: readonly ConvergenceScenario[],
  runs: readonly ConvergenceRun[],
): TargetVerdict[] {
  const get = (s: string, p: ThrottlePolicy, i = 0) => migrationsOf(runs, s, p, i);
  const done = (m: MigrationFigures): boolean => m.outcome === 'completed';
  const hard = scenarios.filter((s) => get(s.name, 'none').some((m) => !done(m)));
  const a = hard.map((s) => {
    const none = get(s.name, 'none');
    const sdps = get(s.name, 'sdps');
    const ok = sdps.length > 0 && sdps.every(done);
    return {
      ok,
      line: `${s.name}: none ${none.filter(done).length}/${none.length}, sdps ${sdps.filter(done).length}/${sdps.length}`,
    };
  });
  const b = hard.map((s) => {
    const sdps = get(s.name, 'sdps');
    const ok = sdps.length > 0 && sdps.every((m) => done(m) && m.downtimeMs <= CONVERGENCE_DOWNTIME_LIMIT_MS);
    const shown = sdps.map((m) => (done(m) ? `${m.downtimeMs.toFixed(1)} ms` : m.outcome));
    return { ok, line: `${s.name}: sdps downtime ${shown.join(', ')}` };
  });
  const c = scenarios.map((s) => {
    const [sdps, ac] = [get(s.name, 'sdps'), get(s.name, 'auto-converge')];
    const [sdpsMs, acMs] = [mean(sdps.map((m) => m.throttledMs)), mean(ac.map((m) => m.throttledMs))];
    const ok = sdpsMs < acMs || (sdpsMs === 0 && acMs === 0);
    const share = (m: MigrationFigures[]): string => pct(mean(m.map((x) => x.workLostShare)));
    return {
      ok,
      line:
        `${s.name}: work lost sdps ${ms(sdpsMs)} ms (${share(sdps)}) vs auto-converge ${ms(acMs)} ms (${share(ac)})` +
        (sdpsMs === 0 && acMs === 0 ? ' — neither throttled' : ''),
    };
  });
  const learned = scenarios.filter((s) => get(s.name, 'history', 0).some((m) => done(m) && m.finalThrottlePercent > 0));
  const d = learned.map((s) => {
    const [first, second] = [get(s.name, 'history', 0), get(s.name, 'history', 1)];
    const [r1, r2] = [mean(first.map((m) => m.rounds)), mean(second.map((m) => m.rounds))];
    const starts = second.map((m) => m.startThrottlePercent.toFixed(0)).join(', ');
    return {
      ok: r2 < r1,
      line: `${s.name}: rounds first ${r1.toFixed(2)} (${first.map((m) => m.rounds).join(', ')}), second ${r2.toFixed(2)} (${second.map((m) => m.rounds).join(', ')}); second started at ${starts}%`,
    };
  });
  const skipped = scenarios.filter((s) => !learned.includes(s)).map((s) => s.name);
  return [
    {
      id: 'a',
      target: 'sdps converges in every run of every scenario where none does not',
      verdict: verdict(a.map((x) => x.ok)),
      lines: a.length > 0 ? a.map(marked) : ['none converged in every run of every scenario'],
    },
    {
      id: 'b',
      target: `sdps's downtime <= ${CONVERGENCE_DOWNTIME_LIMIT_MS} ms in each of those runs`,
      verdict: verdict(b.map((x) => x.ok)),
      lines: b.length > 0 ? b.map(marked) : ['no such scenario'],
    },
    {
      id: 'c',
      target: 'sdps loses less guest work than auto-converge in each scenario (mean throttled ms)',
      verdict: verdict(c.map((x) => x.ok)),
      lines: c.map(marked),
    },
    {
      id: 'd',
      target: "history's second migration converges in fewer rounds than its first (mean)",
      verdict: verdict(d.map((x) => x.ok)),
      lines: [
        ...d.map(marked),
        ...(skipped.length > 0
          ? [`not judged (first migration converged without a throttle to learn): ${skipped.join(', ')}`]
          : []),
      ],
    },
  ];
}
