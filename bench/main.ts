/**
 * `npm run bench`: migrates a 1 GiB guest (incompressible content) idle and with a 64 MiB hot set
 * dirtied at 50 MB/s, three runs each, on a real cluster (Temporal dev server, nats-server, host
 * agents and VMM processes), once per store: the directory store, then the S3 store (a SeaweedFS
 * server of its own cluster). Each store's cluster is started after the previous one is stopped,
 * so they never compete for the machine. On each cluster it first measures, in the same run, raw
 * NATS publish → subscribe throughput with the same message size, and on S3 raw parallel PUT
 * throughput with the store's object size and parallelism (raw-s3.ts). Every migration is checked
 * page by page. Prints a table per store and writes bench/results/<time>.json and
 * bench/results/latest.json.
 *
 * The JSON keeps, at its top level, the directory store's figures under the names they always
 * had (so earlier results stay comparable); the S3 store's are under `s3`, with the same names and
 * its own additions. `allPageChecksOk` covers every store that ran.
 *
 * Options: --runs n (default 3), --memory 1GiB, --store directory|s3|both (default both).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { batchSizeBytes } from '../data-plane/batch-format';
import { parseSize } from '../vmm/size';
import { DEFAULT_BATCH_PAGES } from '../workflows/policy';
import type { BenchStore } from './migration-run';
import { storeReportLines } from './report-table';
import { benchStore } from './store-bench';
import { summarizeStore, type StoreSummary } from './store-summary';

const STORE_CHOICES: Record<string, BenchStore[]> = {
  directory: ['directory'],
  s3: ['s3'],
  both: ['directory', 's3'],
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

function writeResults(summary: { date: string } & Record<string, unknown>): void {
  const dir = path.resolve(__dirname, '..', '..', 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const json = JSON.stringify(summary, null, 2);
  fs.writeFileSync(path.join(dir, `${summary.date.replace(/[:.]/g, '-')}.json`), json);
  fs.writeFileSync(path.join(dir, 'latest.json'), json);
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '3'));
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${arg('runs', '')}`);
  const memoryBytes = parseSize(arg('memory', '1GiB'));
  const stores = storesToRun();
  const messageBytes = batchSizeBytes('migrate-bench-idle-0', DEFAULT_BATCH_PAGES, DEFAULT_BATCH_PAGES);
  const summaries: StoreSummary[] = [];
  for (const store of stores)
    summaries.push(summarizeStore(await benchStore(store, { runs, memoryBytes, messageBytes })));
  const directory = summaries.find((s) => s.store === 'directory');
  const s3 = summaries.find((s) => s.store === 's3');
  const allPageChecksOk = summaries.every((s) => s.allPageChecksOk);
  console.log(summaries.flatMap((s) => storeReportLines(s, messageBytes)).join('\n'));
  writeResults({
    date: new Date().toISOString(),
    memoryBytes,
    runs,
    messageBytes,
    stores,
    ...(directory ?? {}),
    ...(s3 ? { s3 } : {}),
    allPageChecksOk,
  });
  if (!allPageChecksOk) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
