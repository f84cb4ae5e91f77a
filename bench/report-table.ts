/**
 * The benchmark's printed report: per store, its limits, one line per migration and the medians
 * against their targets. The directory store's table has the columns it always had; the S3
 * store's adds the ratio to raw S3 PUTs, the first round's lane, what the store took in meanwhile,
 * and the store's lag at the round's end and at switchover (also in seconds of raw S3 PUTs).
 */
import { HOTSET_SCENARIO, SCENARIOS } from './migration-run';
import type { RunReport, StoreSummary } from './store-summary';

interface Column {
  title: string;
  value(r: RunReport): string;
}

const mb = (bytes: number): string => (bytes / 1e6).toFixed(0);
const ratio = (value: number | undefined): string => (value === undefined ? '-' : value.toFixed(2));

const COMMON_HEAD: Column[] = [
  { title: 'scenario'.padEnd(22), value: (r) => r.scenario },
  { title: 'run', value: (r) => String(r.run) },
  { title: 'rounds', value: (r) => String(r.rounds) },
  { title: 'round0 MB/s', value: (r) => mb(r.firstRoundBytesPerSec) },
];

const DIRECTORY_COLUMNS: Column[] = [
  ...COMMON_HEAD,
  { title: 'ratio', value: (r) => ratio(r.firstRoundRatioToRawNats) },
  { title: 'downtime ms', value: (r) => r.downtimeMs.toFixed(1) },
  { title: 'total ms', value: (r) => String(r.totalMs) },
];

const S3_COLUMNS: Column[] = [
  ...COMMON_HEAD,
  { title: '/NATS', value: (r) => ratio(r.firstRoundRatioToRawNats) },
  { title: '/S3 PUT', value: (r) => ratio(r.firstRoundRatioToRawS3Put) },
  { title: 'lane', value: (r) => r.firstRoundLane },
  { title: 'round0 store MB/s', value: (r) => mb(r.firstRoundStoreBytesPerSec) },
  { title: 'downtime ms', value: (r) => r.downtimeMs.toFixed(1) },
  { title: 'total ms', value: (r) => String(r.totalMs) },
  { title: 'round0 lag MB', value: (r) => (r.firstRoundStoreLagBytes / 1e6).toFixed(1) },
  { title: 'stun lag MB', value: (r) => (r.storeLagBytesAtSwitchover / 1e6).toFixed(1) },
  { title: 'lag s', value: (r) => ratio(r.storeLagSecondsAtRawS3Put) },
];

function pageCheck(r: RunReport): string {
  if (r.outcome !== 'completed') return `not checked: ${r.outcome} (${r.reason ?? 'no reason given'})`;
  return r.pageCheckOk ? 'ok' : 'FAILED';
}

function table(columns: Column[], runs: RunReport[]): string[] {
  const cell = (column: Column, text: string, index: number): string =>
    index === 0 ? text.padEnd(column.title.length) : text.padStart(column.title.length);
  const line = (cells: string[]): string => cells.join('  ');
  return [
    line([...columns.map((c) => c.title), 'page check']),
    ...runs.map((r) => line([...columns.map((c, i) => cell(c, c.value(r), i)), pageCheck(r)])),
  ];
}

function medianLines(s: StoreSummary): string[] {
  const lines = [
    `first-round throughput / raw NATS: ${s.firstRoundThroughputRatioToRawNats.toFixed(2)} (target >= ${s.targets.firstRoundThroughputRatioToRawNats.toFixed(2)})`,
  ];
  if (s.rawS3 && s.firstRoundThroughputRatioToRawS3Put !== undefined)
    lines.push(
      `first-round throughput / raw S3 PUT: ${s.firstRoundThroughputRatioToRawS3Put.toFixed(2)}; meanwhile the store ` +
        `took in ${mb(s.firstRoundStoreMedianBytesPerSec)} MB/s = ${ratio(s.firstRoundStoreMedianBytesPerSec / s.rawS3.putBytesPerSec)} × raw S3 PUT (medians)`,
    );
  lines.push(
    `hot-set downtime median: ${s.hotsetDowntimeMedianMs.toFixed(1)} ms (target <= ${s.targets.hotsetDowntimeMedianMs} ms)`,
  );
  if (!s.rawS3) return lines;
  for (const { name } of SCENARIOS) {
    const scenario = s.byScenario[name];
    if (!scenario) continue;
    const lagSeconds = scenario.storeLagAtSwitchoverMedianSecondsAtRawS3Put ?? NaN;
    lines.push(
      `${name === HOTSET_SCENARIO ? 'hot-set' : name} medians of ${scenario.completedRuns} completed: downtime ${scenario.downtimeMedianMs.toFixed(1)} ms, ` +
        `total ${(scenario.totalMedianMs / 1000).toFixed(1)} s, rounds ${scenario.roundsMedian}, store lag at switchover ` +
        `${(scenario.storeLagAtSwitchoverMedianBytes / 1e6).toFixed(1)} MB = ${lagSeconds.toFixed(2)} s at raw S3 PUT rate`,
    );
  }
  return lines;
}

/** The printed lines for one store. */
export function storeReportLines(s: StoreSummary, messageBytes: number): string[] {
  const natsRuns = s.rawNatsRuns.length;
  const lines = [
    `== ${s.store} store (${s.storeRef})`,
    `raw NATS (${messageBytes} B messages, 2 processes): ${mb(s.rawNatsBytesPerSec)} MB/s (median of ${natsRuns})`,
  ];
  if (s.rawS3) {
    const { objectBytes, objects, parallel, putBytesPerSec, getBytesPerSec, runs } = s.rawS3;
    lines.push(
      `raw S3 (${objectBytes} B objects, ${parallel} in parallel, ${(objects * objectBytes) / 2 ** 20} MiB, CRC32, ` +
        `1 process): PUT ${mb(putBytesPerSec)} MB/s, GET ${mb(getBytesPerSec)} MB/s (median of ${runs.length}; ` +
        `PUT runs ${runs.map((r) => mb(r.putBytesPerSec)).join(', ')}; CPU per GB of PUTs ` +
        `${runs.map((r) => (r.putCpuMs / ((r.objects * r.objectBytes) / 1e9) / 1000).toFixed(1)).join(', ')} s)`,
    );
  }
  return [...lines, ...table(s.rawS3 ? S3_COLUMNS : DIRECTORY_COLUMNS, s.runsDetail), ...medianLines(s)];
}
