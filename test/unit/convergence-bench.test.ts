import type { ConvergenceRun, MigrationFigures } from '../../bench/convergence-run';
import { convergenceScenarios, plottedScenario } from '../../bench/convergence-scenarios';
import { convergenceRows, convergenceTargets } from '../../bench/convergence-summary';
import { lineChartSvg, niceStep } from '../../bench/plot-svg';
import type { ThrottlePolicy } from '../../workflows/throttle-policy';

const GIB = 2 ** 30;

function migration(overrides: Partial<MigrationFigures>): MigrationFigures {
  return {
    vmId: 'vm',
    from: 'h1',
    to: 'h2',
    outcome: 'completed',
    rounds: 4,
    totalMs: 10_000,
    downtimeMs: 100,
    bytesViaNetwork: 2e9,
    throttledMs: 0,
    workLostShare: 0,
    startThrottlePercent: 0,
    maxThrottlePercent: 0,
    finalThrottlePercent: 0,
    guestWriteRateBytesPerSec: 1e8,
    pageCheckOk: true,
    roundsDetail: [],
    ...overrides,
  };
}

function run(scenario: string, policy: ThrottlePolicy, ...migrations: Partial<MigrationFigures>[]): ConvergenceRun {
  return { scenario, policy, run: 0, migrations: migrations.map(migration) };
}

describe('convergence benchmark scenarios', () => {
  it('scales write rates from the send rate, with two hot sets per rate in the full set', () => {
    const scenarios = convergenceScenarios('full', 200e6, GIB);
    expect(scenarios.map((s) => s.name)).toEqual([
      '0.5x-128MiB',
      '0.5x-512MiB',
      '1x-128MiB',
      '1x-512MiB',
      '2x-128MiB',
      '2x-512MiB',
      '4x-128MiB',
      '4x-512MiB',
    ]);
    expect(scenarios[7]?.workload).toEqual({ type: 'hotset', hotSetBytes: 512 * 2 ** 20, rateBytesPerSec: 800e6 });
    expect(plottedScenario(scenarios)?.name).toBe('2x-512MiB');
  });

  it('keeps one 256 MiB hot set at the low rates in the reduced set, and scales hot sets to a small guest', () => {
    expect(convergenceScenarios('reduced', 100e6, GIB).map((s) => s.name)).toEqual([
      '0.5x-256MiB',
      '1x-256MiB',
      '2x-128MiB',
      '2x-512MiB',
      '4x-128MiB',
      '4x-512MiB',
    ]);
    expect(convergenceScenarios('full', 100e6, GIB / 4).map((s) => s.hotSetBytes / 2 ** 20)).toEqual([
      32, 128, 32, 128, 32, 128, 32, 128,
    ]);
  });

  it('refuses to scale from a send rate of zero', () => {
    expect(() => convergenceScenarios('full', 0, GIB)).toThrow('the send rate must be positive');
  });
});

describe('convergence benchmark targets', () => {
  const [easy, hard] = convergenceScenarios('full', 100e6, GIB).slice(0, 2) as [
    ReturnType<typeof convergenceScenarios>[number],
    ReturnType<typeof convergenceScenarios>[number],
  ];
  const scenarios = [easy, hard];

  it('passes when sdps converges within the limit where none aborts, loses less and history learns', () => {
    const runs = [
      run(easy.name, 'none', {}),
      run(easy.name, 'auto-converge', {}),
      run(easy.name, 'sdps', {}),
      run(easy.name, 'history', {}, {}),
      run(hard.name, 'none', { outcome: 'aborted', rounds: 15 }),
      run(hard.name, 'auto-converge', { throttledMs: 900, workLostShare: 0.2 }),
      run(hard.name, 'sdps', { throttledMs: 400, workLostShare: 0.1, downtimeMs: 250 }),
      run(hard.name, 'history', { rounds: 5, finalThrottlePercent: 40 }, { rounds: 3, startThrottlePercent: 40 }),
    ];
    const verdicts = convergenceTargets(scenarios, runs);
    expect(verdicts.map((v) => `${v.id} ${v.verdict}`)).toEqual(['a PASS', 'b PASS', 'c PASS', 'd PASS']);
    expect(verdicts[2]?.lines[0]).toContain('neither throttled');
    expect(verdicts[3]?.lines[1]).toContain(easy.name);
  });

  it('fails each target on the run that misses it, with the numbers behind it', () => {
    const runs = [
      run(hard.name, 'none', { outcome: 'aborted' }),
      run(hard.name, 'auto-converge', { throttledMs: 300 }),
      run(hard.name, 'sdps', { throttledMs: 400, downtimeMs: 390.5 }),
      run(hard.name, 'history', { rounds: 3, finalThrottlePercent: 50 }, { rounds: 3 }),
    ];
    const [a, b, c, d] = convergenceTargets([hard], runs);
    expect(a?.verdict).toBe('PASS');
    expect(b?.verdict).toBe('FAIL');
    expect(b?.lines).toEqual([`FAIL ${hard.name}: sdps downtime 390.5 ms`]);
    expect(c?.verdict).toBe('FAIL');
    expect(c?.lines[0]).toContain('sdps 400 ms');
    expect(d?.verdict).toBe('FAIL');
  });

  it('gives history its first and second migration a row each', () => {
    const runs = [run(easy.name, 'history', { rounds: 5 }, { rounds: 2, outcome: 'aborted' })];
    const rows = convergenceRows([easy], runs).filter((r) => r.policy === 'history');
    expect(rows.map((r) => [r.migration, r.roundsMean, r.converged])).toEqual([
      [1, 5, 1],
      [2, 2, 0],
    ]);
    expect(Number.isNaN(rows[1]?.downtimeMeanMs)).toBe(true);
  });
});

describe('SVG line chart', () => {
  it('picks ticks of 1, 2 or 5 times a power of ten', () => {
    expect([niceStep(100), niceStep(270), niceStep(7), niceStep(0)]).toEqual([20, 50, 1, 1]);
  });

  it('draws every series with a legend entry, both axis labels and escaped text', () => {
    const svg = lineChartSvg({
      title: 'sdps <2x>',
      xLabel: 'pre-copy round',
      leftLabel: 'MB/s',
      rightLabel: 'throttle %',
      rightMax: 100,
      series: [
        {
          name: 'send rate',
          axis: 'left',
          color: 'blue',
          points: [
            { x: 0, y: 200 },
            { x: 1, y: 220 },
          ],
        },
        {
          name: 'throttle',
          axis: 'right',
          color: 'green',
          points: [
            { x: 0, y: 0 },
            { x: 1, y: 60 },
          ],
        },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('sdps &lt;2x&gt;');
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    for (const label of ['send rate', 'throttle (right axis)', 'pre-copy round', 'MB/s', 'throttle %'])
      expect(svg).toContain(`>${label}</text>`);
  });
});
