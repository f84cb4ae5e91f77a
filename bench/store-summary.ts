/**
 * The figures of one store's bench, summarised as the JSON result holds them: medians, and every
 * throughput as a ratio to the limits measured in the same run (raw NATS; on S3, raw PUTs too).
 * The directory store's summary keeps the field names of the results written before the S3 store
 * existed, so they stay comparable; what came with S3 is added, nothing renamed. Downtime, total
 * time and lag at switchover are medians of the completed migrations only (one that was aborted has
 * no switchover); first-round throughput is the median of every run.
 */
import { HOTSET_SCENARIO, SCENARIOS, type BenchStore, type RunFigures } from './migration-run';
import type { RawNatsResult } from './raw-nats';
import type { RawS3Result } from './raw-s3';
import type { StoreBench } from './store-bench';

/** Targets, reported as ratios and medians, never asserted. */
export const TARGETS = { firstRoundThroughputRatioToRawNats: 0.8, hotsetDowntimeMedianMs: 50 };

/** One run's figures with its ratios to the same run's limits. */
export interface RunReport extends RunFigures {
  firstRoundRatioToRawNats: number;
  /** S3 only. */
  firstRoundRatioToRawS3Put?: number;
  /** The store's lag at switchover in seconds of raw S3 PUTs (S3 only). */
  storeLagSecondsAtRawS3Put?: number;
}

/** Medians of one scenario's runs. */
export interface ScenarioSummary {
  runs: number;
  completedRuns: number;
  roundsMedian: number;
  downtimeMedianMs: number;
  totalMedianMs: number;
  storeLagAtSwitchoverMedianBytes: number;
  /** S3 only. */
  storeLagAtSwitchoverMedianSecondsAtRawS3Put?: number;
}

/** Raw S3 throughput, the median of the runs. */
export interface RawS3Summary {
  objectBytes: number;
  objects: number;
  parallel: number;
  putBytesPerSec: number;
  getBytesPerSec: number;
  runs: RawS3Result[];
}

/** One store's summary; see the module comment. */
export interface StoreSummary {
  store: BenchStore;
  storeRef: string;
  rawNatsBytesPerSec: number;
  rawNatsRuns: RawNatsResult[];
  /** S3 only. */
  rawS3?: RawS3Summary;
  firstRoundThroughputMedianBytesPerSec: number;
  firstRoundThroughputRatioToRawNats: number;
  /** S3 only. */
  firstRoundThroughputRatioToRawS3Put?: number;
  /** What the store took in during the first round (RunFigures.firstRoundStoreBytesPerSec), median. */
  firstRoundStoreMedianBytesPerSec: number;
  idleDowntimeMedianMs: number;
  hotsetDowntimeMedianMs: number;
  byScenario: Record<string, ScenarioSummary>;
  allPageChecksOk: boolean;
  targets: typeof TARGETS;
  runsDetail: RunReport[];
}

/** The median of `values` (NaN for none). */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function summarizeRawS3(runs: RawS3Result[]): RawS3Summary | undefined {
  const first = runs[0];
  if (!first) return undefined;
  return {
    objectBytes: first.objectBytes,
    objects: first.objects,
    parallel: first.parallel,
    putBytesPerSec: median(runs.map((r) => r.putBytesPerSec)),
    getBytesPerSec: median(runs.map((r) => r.getBytesPerSec)),
    runs,
  };
}

function reportRun(f: RunFigures, rawNatsBytesPerSec: number, rawS3: RawS3Summary | undefined): RunReport {
  const report: RunReport = { ...f, firstRoundRatioToRawNats: f.firstRoundBytesPerSec / rawNatsBytesPerSec };
  if (!rawS3) return report;
  return {
    ...report,
    firstRoundRatioToRawS3Put: f.firstRoundBytesPerSec / rawS3.putBytesPerSec,
    storeLagSecondsAtRawS3Put: f.storeLagBytesAtSwitchover / rawS3.putBytesPerSec,
  };
}

function summarizeScenario(all: RunFigures[], rawS3: RawS3Summary | undefined): ScenarioSummary {
  const runs = all.filter((f) => f.outcome === 'completed');
  const lag = median(runs.map((f) => f.storeLagBytesAtSwitchover));
  return {
    runs: all.length,
    completedRuns: runs.length,
    roundsMedian: median(runs.map((f) => f.rounds)),
    downtimeMedianMs: median(runs.map((f) => f.downtimeMs)),
    totalMedianMs: median(runs.map((f) => f.totalMs)),
    storeLagAtSwitchoverMedianBytes: lag,
    ...(rawS3 ? { storeLagAtSwitchoverMedianSecondsAtRawS3Put: lag / rawS3.putBytesPerSec } : {}),
  };
}

/** Summarises one store's bench. */
export function summarizeStore(bench: StoreBench): StoreSummary {
  const rawNatsBytesPerSec = median(bench.rawNatsRuns.map((r) => r.bytesPerSec));
  const rawS3 = summarizeRawS3(bench.rawS3Runs);
  const firstRound = median(bench.figures.map((f) => f.firstRoundBytesPerSec));
  const ofScenario = (name: string): RunFigures[] => bench.figures.filter((f) => f.scenario === name);
  const completed = (name: string): RunFigures[] => ofScenario(name).filter((f) => f.outcome === 'completed');
  const byScenario = Object.fromEntries(
    SCENARIOS.map((s) => [s.name, summarizeScenario(ofScenario(s.name), rawS3)] as const),
  );
  return {
    store: bench.store,
    storeRef: bench.storeRef,
    rawNatsBytesPerSec,
    rawNatsRuns: bench.rawNatsRuns,
    ...(rawS3 ? { rawS3 } : {}),
    firstRoundThroughputMedianBytesPerSec: firstRound,
    firstRoundThroughputRatioToRawNats: firstRound / rawNatsBytesPerSec,
    ...(rawS3 ? { firstRoundThroughputRatioToRawS3Put: firstRound / rawS3.putBytesPerSec } : {}),
    firstRoundStoreMedianBytesPerSec: median(bench.figures.map((f) => f.firstRoundStoreBytesPerSec)),
    idleDowntimeMedianMs: median(completed('idle').map((f) => f.downtimeMs)),
    hotsetDowntimeMedianMs: median(completed(HOTSET_SCENARIO).map((f) => f.downtimeMs)),
    byScenario,
    allPageChecksOk: bench.figures.every((f) => f.pageCheckOk),
    targets: TARGETS,
    runsDetail: bench.figures.map((f) => reportRun(f, rawNatsBytesPerSec, rawS3)),
  };
}
