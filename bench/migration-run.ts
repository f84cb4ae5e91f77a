/**
 * One benchmark migration: a fresh guest on h1 migrated to h2 with the source kept stunned, then
 * both copies' memory compared page by page, then both destroyed. What it measured comes back as
 * RunFigures, the figures of the JSON's `runsDetail`. A migration that ends without completing (it
 * did not converge, say) is reported with its outcome and reason rather than ending the benchmark.
 */
import type { FerryClient } from '../cli/ferry-client';
import { compareMigratedMemory } from '../verification';
import type { Workload } from '../vmm/vcpu';
import type { MigrationOutcome, MigrationResult, RoundSummary } from '../workflows/types';

/** Which store a benchmark cluster mirrors pages into. */
export type BenchStore = 'directory' | 's3';

/** A guest workload migrated `runs` times on each store. */
export interface Scenario {
  name: string;
  workload: Workload;
}

/** The benchmark's scenarios: an idle guest, and a 64 MiB hot set dirtied at 50 MB/s. */
export const SCENARIOS: readonly Scenario[] = [
  { name: 'idle', workload: { type: 'idle' } },
  { name: 'hotset-64MiB-50MBps', workload: { type: 'hotset', hotSetBytes: 64 * 2 ** 20, rateBytesPerSec: 50e6 } },
];

/** Name of the hot-set scenario, whose downtime has a target. */
export const HOTSET_SCENARIO = 'hotset-64MiB-50MBps';

/** What one migration measured. */
export interface RunFigures {
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
  store: BenchStore;
  /** `network` unless the first round gave up the stream and went to the store alone. */
  firstRoundLane: RoundSummary['lane'];
  firstRoundMs: number;
  /** Bytes the store did not yet hold at the end of the first round. */
  firstRoundStoreLagBytes: number;
  /**
   * What the store took in during the first round, per second: the round's bytes less its lag at
   * the round's end (batch framing counts, so about 0.2% high). Beside the network lane's rate it
   * shows whether the two lanes share a limit.
   */
  firstRoundStoreBytesPerSec: number;
  bytesMirroredToStore: number;
  bytesViaStore: number;
  /** Failures recovered during the migration (0 for an undisturbed one). */
  incidents: number;
  /** Only a completed migration is checked page by page; any other counts as a failed check. */
  outcome: MigrationOutcome;
  /** Why the migration did not complete. */
  reason?: string;
  roundsDetail: RoundSummary[];
}

/** Migrates a new guest of `memoryBytes` running `scenario` from h1 to h2 and checks it page by page. */
export async function migrateOnce(
  ferry: FerryClient,
  stateDir: string,
  store: BenchStore,
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
  const { result, reason } = await ferry.result(workflowId).then(
    (completed) => ({ result: completed, reason: undefined }),
    (error: unknown) => {
      // A migration that did not complete still has its rounds to report.
      const ended = (error as { result?: MigrationResult }).result;
      if (!ended) throw error;
      return { result: ended, reason: (error as Error).message };
    },
  );
  const comparison =
    result.outcome === 'completed'
      ? await compareMigratedMemory(ferry, { vmId, sourceHost: 'h1', destinationHost: 'h2', dir: `${stateDir}/dumps` })
      : undefined;
  await ferry.destroyVm('h1', vmId);
  // After a rollback the destination has nothing left to destroy.
  await ferry.destroyVm('h2', vmId).catch((error: unknown) => {
    if (result.outcome === 'completed') throw error;
  });
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
    pageCheckOk: comparison !== undefined && comparison.ok && comparison.sourceState !== 'running' && result.verified,
    storeLagBytesAtSwitchover: result.switchover?.storeLagBytes ?? last?.storeLagBytes ?? 0,
    switchover: result.switchover,
    store,
    firstRoundLane: first?.lane ?? 'network',
    firstRoundMs: first?.durationMs ?? 0,
    firstRoundStoreLagBytes: first?.storeLagBytes ?? 0,
    firstRoundStoreBytesPerSec: first
      ? Math.max(0, first.bytesSent - first.storeLagBytes) / (first.durationMs / 1000)
      : 0,
    bytesMirroredToStore: result.bytesMirroredToStore,
    bytesViaStore: result.bytesViaStore,
    incidents: result.incidents.length,
    outcome: result.outcome,
    ...(reason !== undefined ? { reason } : {}),
    roundsDetail: result.rounds,
  };
}
