/**
 * `npm run bench`: four parts, in this order, each on a cluster of its own (Temporal dev server,
 * nats-server, host agents and VMM processes) started after the previous one is stopped, so they
 * never compete for the machine.
 *
 * The store part migrates a 1 GiB guest (incompressible content) idle and with a 64 MiB hot set
 * dirtied at 50 MB/s, three runs each, once per store: the directory store, then the S3 store (a
 * SeaweedFS server of its own cluster). On each cluster it first measures, in the same run, raw
 * NATS publish → subscribe throughput with the same message size, and on S3 raw parallel PUT
 * throughput with the store's object size and parallelism (raw-s3.ts).
 *
 * The convergence part (convergence.ts, issue 6) measures the send rate S, then migrates hot-set
 * guests writing at 0.5× to 4× S under every throttle policy, three runs each, and judges the
 * targets; it writes an SVG plot per policy next to the JSON (convergence-plots.ts).
 *
 * The QEMU part (qemu-bench.ts, issue 12) runs last: a 1 GiB QEMU guest (832 MiB filled with
 * random data, 64 MiB hot set at 50 MB/s) migrated by ferry and, beside each run, by QEMU's own
 * migration over loopback TCP, then once by ferry with nats-server killed at half of round 0;
 * total time, downtime, bytes and differing pages of each, ratios and the targets.
 *
 * The encrypt part (encrypt-bench.ts) runs first, in this process and in seconds: what
 * `policy.encrypt` costs the build and decode of a batch, against the clear batch with its HMAC.
 *
 * Every completed migration is checked page by page. Prints a table per part and writes
 * bench/results/<time>.json and bench/results/latest.json.
 *
 * The JSON keeps, at its top level, the directory store's figures under the names they always
 * had (so earlier results stay comparable); the S3 store's are under `s3`, with the same names and
 * its own additions; the convergence part's under `convergence`; the encrypt part's under `encrypt`; the
 * QEMU part's under `qemu`. `parts` names the parts that ran; `allPageChecksOk` covers all of them (for the
 * QEMU part: ferry's runs; QEMU's own runs are measured, not checked).
 *
 * Options: --runs n (default 3), --memory 1GiB, --only stores|convergence|encrypt|qemu (default all four),
 * --store directory|s3|both (store part; default both), --scenarios full|reduced (convergence
 * part; default full: hot sets of 128 and 512 MiB at every rate), --encrypt-pages n (pages per batch
 * of the encrypt part; default 256).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { batchSizeBytes } from '../data-plane/batch-format';
import { parseSize } from '../vmm/size';
import { DEFAULT_BATCH_PAGES } from '../workflows/policy';
import type { BenchStore } from './migration-run';
import { benchConvergence, summarizeConvergence, type ConvergenceSummary } from './convergence';
import { writeConvergencePlots } from './convergence-plots';
import { convergenceReportLines } from './convergence-report';
import { parseScenarioSet } from './convergence-scenarios';
import { benchQemu } from './qemu-bench';
import { qemuReportLines } from './qemu-report';
import { summarizeQemu, type QemuSummary } from './qemu-summary';
import { storeReportLines } from './report-table';
import { benchStore } from './store-bench';
import { benchEncrypt, encryptReportLines, DEFAULT_ENCRYPT_BENCH_PAGES } from './encrypt-bench';
import { summarizeStore, type StoreSummary } from './store-summary';

const STORE_CHOICES: Record<string, BenchStore[]> = {
  directory: ['directory'],
  s3: ['s3'],
  both: ['directory', 's3'],
};

type Part = 'stores' | 'convergence' | 'encrypt' | 'qemu';

const PART_CHOICES: Record<string, Part[]> = {
  stores: ['stores'],
  convergence: ['convergence'],
  encrypt: ['encrypt'],
  qemu: ['qemu'],
  both: ['encrypt', 'stores', 'convergence', 'qemu'],
};

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

function storesToRun(): BenchStore[] {
  const choice = arg('store', 'both');
  const stores = STORE_CHOICES[choice];
  if (!stores) throw new Error(`--store must be directory, s3 or both, got ${JSON.stringify(choice)}`);
  return stores;
}

function partsToRun(): Part[] {
  const choice = arg('only', 'both');
  const parts = PART_CHOICES[choice];
  if (!parts) throw new Error(`--only must be stores, convergence, encrypt or qemu, got ${JSON.stringify(choice)}`);
  return parts;
}

const RESULTS_DIR = path.resolve(__dirname, '..', '..', 'bench', 'results');

/** `date` as it appears in file names. */
function fileStamp(date: string): string {
  return date.replace(/[:.]/g, '-');
}

function writeResults(summary: { date: string } & Record<string, unknown>): void {
  const json = JSON.stringify(summary, null, 2);
  fs.writeFileSync(path.join(RESULTS_DIR, `${fileStamp(summary.date)}.json`), json);
  fs.writeFileSync(path.join(RESULTS_DIR, 'latest.json'), json);
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '3'));
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${arg('runs', '')}`);
  const memoryBytes = parseSize(arg('memory', '1GiB'));
  const parts = partsToRun();
  const stores = parts.includes('stores') ? storesToRun() : [];
  const scenarioSet = parseScenarioSet(arg('scenarios', 'full'));
  const messageBytes = batchSizeBytes('migrate-bench-idle-0', DEFAULT_BATCH_PAGES, DEFAULT_BATCH_PAGES);
  const encrypt = parts.includes('encrypt')
    ? benchEncrypt({ pages: Number(arg('encrypt-pages', String(DEFAULT_ENCRYPT_BENCH_PAGES))) })
    : undefined;
  if (encrypt) console.log(encryptReportLines(encrypt).join('\n'));
  const summaries: StoreSummary[] = [];
  for (const store of stores)
    summaries.push(summarizeStore(await benchStore(store, { runs, memoryBytes, messageBytes })));
  // Printed before the convergence part starts, so that its failure does not lose them.
  if (summaries.length > 0) console.log(summaries.flatMap((s) => storeReportLines(s, messageBytes)).join('\n'));
  const convergenceBench = parts.includes('convergence')
    ? await benchConvergence({ runs, memoryBytes, scenarioSet })
    : undefined;
  const date = new Date().toISOString();
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  let convergence: ConvergenceSummary | undefined;
  if (convergenceBench) {
    const { scenarios, runsDetail } = convergenceBench;
    const plots = writeConvergencePlots(RESULTS_DIR, fileStamp(date), scenarios, runsDetail);
    convergence = summarizeConvergence(convergenceBench, plots);
  }
  const directory = summaries.find((s) => s.store === 'directory');
  const s3 = summaries.find((s) => s.store === 's3');
  if (convergence) console.log(convergenceReportLines(convergence).join('\n'));
  const qemu: QemuSummary | undefined = parts.includes('qemu') ? summarizeQemu(await benchQemu({ runs })) : undefined;
  if (qemu) console.log(qemuReportLines(qemu).join('\n'));
  const allPageChecksOk =
    summaries.every((s) => s.allPageChecksOk) &&
    (convergence?.allPageChecksOk ?? true) &&
    (qemu?.allFerryPageChecksOk ?? true);
  writeResults({
    date,
    memoryBytes,
    runs,
    parts,
    ...(stores.length > 0 ? { messageBytes, stores } : {}),
    ...(directory ?? {}),
    ...(s3 ? { s3 } : {}),
    ...(convergence ? { convergence } : {}),
    ...(encrypt ? { encrypt } : {}),
    ...(qemu ? { qemu } : {}),
    allPageChecksOk,
  });
  if (!allPageChecksOk) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
