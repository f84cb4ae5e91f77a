/**
 * `npm run bench`: migrates a 1 GiB guest (incompressible content) idle and with a 64 MiB hot set
 * dirtied at 50 MB/s, three runs each, on a real cluster (Temporal dev server, nats-server, host
 * agents and VMM processes), and measures in the same run raw NATS publish → subscribe throughput
 * with the same message size. Every migration is checked page by page. Prints a table and writes
 * bench/results/<time>.json and bench/results/latest.json.
 *
 * Options: --runs n (default 3), --memory 1GiB.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryClient } from '../cli/ferry-client';
import { startTestCluster } from '../infra/test-cluster';
import { batchSizeBytes } from '../data-plane/batch-format';
import { compareMigratedMemory } from '../verification';
import { parseSize } from '../vmm/size';
import type { Workload } from '../vmm/vcpu';
import { DEFAULT_BATCH_PAGES, DEFAULT_CREDIT_WINDOW } from '../workflows/policy';
import type { MigrationResult } from '../workflows/types';
import { measureRawNats, type RawNatsResult } from './raw-nats';

interface Scenario {
  name: string;
  workload: Workload;
}

interface RunFigures {
  scenario: string;
  run: number;
  rounds: number;
  firstRoundBytesPerSec: number;
  totalMs: number;
  downtimeMs: number;
  bytesViaNetwork: number;
  pageCheckOk: boolean;
  storeLagBytesAtSwitchover: number;
  /** Where the downtime went (see MigrationResult.switchover). */
  switchover: MigrationResult['switchover'];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

async function migrateOnce(
  ferry: FerryClient,
  stateDir: string,
  scenario: Scenario,
  memoryBytes: number,
  run: number,
): Promise<RunFigures> {
  const vmId = `bench-${scenario.name}-${run}`;
  await ferry.createVm('h1', { vmId, memoryBytes, workload: scenario.workload, seed: 1000 + run });
  await new Promise((r) => setTimeout(r, 1_000));
  const workflowId = await ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true },
  });
  const result: MigrationResult = await ferry.result(workflowId);
  const comparison = await compareMigratedMemory(ferry, {
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    dir: stateDir,
  });
  await ferry.destroyVm('h1', vmId);
  await ferry.destroyVm('h2', vmId);
  const first = result.rounds[0];
  const last = result.rounds[result.rounds.length - 1];
  return {
    scenario: scenario.name,
    run,
    rounds: result.rounds.length,
    firstRoundBytesPerSec: first?.throughputBytesPerSec ?? 0,
    totalMs: result.totalMs,
    downtimeMs: result.downtimeMs,
    bytesViaNetwork: result.bytesViaNetwork,
    pageCheckOk: comparison.ok && comparison.sourceState !== 'running' && result.verified,
    storeLagBytesAtSwitchover: result.switchover?.storeLagBytes ?? last?.storeLagBytes ?? 0,
    switchover: result.switchover,
  };
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '3'));
  const memoryBytes = parseSize(arg('memory', '1GiB'));
  const scenarios: Scenario[] = [
    { name: 'idle', workload: { type: 'idle' } },
    { name: 'hotset-64MiB-50MBps', workload: { type: 'hotset', hotSetBytes: 64 * 2 ** 20, rateBytesPerSec: 50e6 } },
  ];
  const cluster = await startTestCluster();
  const ferry = await FerryClient.connect(cluster.temporal.address);
  try {
    const messageBytes = batchSizeBytes('migrate-bench-idle-0', DEFAULT_BATCH_PAGES, DEFAULT_BATCH_PAGES);
    const rawRuns: RawNatsResult[] = [];
    for (let i = 0; i < runs; i += 1)
      rawRuns.push(
        await measureRawNats(
          cluster.nats.url,
          messageBytes,
          Math.ceil(memoryBytes / (DEFAULT_BATCH_PAGES * 4096)),
          DEFAULT_CREDIT_WINDOW,
        ),
      );
    const rawNatsBytesPerSec = median(rawRuns.map((r) => r.bytesPerSec));
    const figures: RunFigures[] = [];
    for (const scenario of scenarios) {
      for (let run = 0; run < runs; run += 1) {
        const f = await migrateOnce(ferry, cluster.env.stateDir, scenario, memoryBytes, run);
        figures.push(f);
        process.stderr.write(
          `${f.scenario} run ${run}: round0 ${(f.firstRoundBytesPerSec / 1e6).toFixed(0)} MB/s, downtime ${f.downtimeMs.toFixed(1)} ms, rounds ${f.rounds}, total ${f.totalMs} ms, check ${f.pageCheckOk ? 'ok' : 'FAILED'}\n`,
        );
      }
    }
    const byScenario = (name: string) => figures.filter((f) => f.scenario === name);
    const firstRoundMedian = median(figures.map((f) => f.firstRoundBytesPerSec));
    const summary = {
      date: new Date().toISOString(),
      memoryBytes,
      runs,
      messageBytes,
      rawNatsBytesPerSec,
      rawNatsRuns: rawRuns,
      firstRoundThroughputMedianBytesPerSec: firstRoundMedian,
      firstRoundThroughputRatioToRawNats: firstRoundMedian / rawNatsBytesPerSec,
      idleDowntimeMedianMs: median(byScenario('idle').map((f) => f.downtimeMs)),
      hotsetDowntimeMedianMs: median(byScenario('hotset-64MiB-50MBps').map((f) => f.downtimeMs)),
      allPageChecksOk: figures.every((f) => f.pageCheckOk),
      targets: { firstRoundThroughputRatioToRawNats: 0.8, hotsetDowntimeMedianMs: 50 },
      runsDetail: figures,
    };
    const lines = [
      `raw NATS (${messageBytes} B messages, 2 processes): ${(rawNatsBytesPerSec / 1e6).toFixed(0)} MB/s (median of ${runs})`,
      'scenario               run  rounds  round0 MB/s  ratio  downtime ms  total ms  page check',
      ...figures.map(
        (f) =>
          `${f.scenario.padEnd(22)} ${String(f.run).padStart(3)}  ${String(f.rounds).padStart(6)}  ${(f.firstRoundBytesPerSec / 1e6).toFixed(0).padStart(11)}  ${(f.firstRoundBytesPerSec / rawNatsBytesPerSec).toFixed(2).padStart(5)}  ${f.downtimeMs.toFixed(1).padStart(11)}  ${String(f.totalMs).padStart(8)}  ${f.pageCheckOk ? 'ok' : 'FAILED'}`,
      ),
      `first-round throughput / raw NATS: ${summary.firstRoundThroughputRatioToRawNats.toFixed(2)} (target >= 0.80)`,
      `hot-set downtime median: ${summary.hotsetDowntimeMedianMs.toFixed(1)} ms (target <= 50 ms)`,
    ];
    console.log(lines.join('\n'));
    const dir = path.resolve(__dirname, '..', '..', 'bench', 'results');
    fs.mkdirSync(dir, { recursive: true });
    const json = JSON.stringify(summary, null, 2);
    fs.writeFileSync(path.join(dir, `${summary.date.replace(/[:.]/g, '-')}.json`), json);
    fs.writeFileSync(path.join(dir, 'latest.json'), json);
    if (!summary.allPageChecksOk) process.exitCode = 1;
  } finally {
    await ferry.close();
    await cluster.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
