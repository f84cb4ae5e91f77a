/**
 * The benchmark on one store: a cluster of its own (for S3, with its own SeaweedFS server), on
 * which it first measures the limits — raw NATS with the batch size, and on S3 raw parallel PUTs
 * with the store's object size and parallelism — then runs every scenario `runs` times. The
 * cluster is stopped before this returns, so two stores' benches never compete for the machine.
 */
import { FerryClient } from '../cli/ferry-client';
import { startTestCluster, TEST_CLUSTER_BUCKET } from '../harness/test-cluster';
import { MAX_PARALLEL_UPLOADS } from '../store/object/chunk-uploader';
import { CHUNK_BYTES } from '../store/object/object-page-layout';
import { DEFAULT_BATCH_PAGES, DEFAULT_CREDIT_WINDOW } from '../workflows/policy';
import { migrateOnce, SCENARIOS, type BenchStore, type RunFigures } from './migration-run';
import { measureRawNats, type RawNatsResult } from './raw-nats';
import { measureRawS3, type RawS3Result } from './raw-s3';

/** Bytes put (and read back) by one raw S3 measurement: 256 MiB. */
export const RAW_S3_BYTES = 256 * 2 ** 20;

/** How much to measure. */
export interface StoreBenchOptions {
  runs: number;
  memoryBytes: number;
  /** Size of a NATS message of the page stream (a full batch). */
  messageBytes: number;
}

/** Everything measured on one store's cluster. */
export interface StoreBench {
  store: BenchStore;
  /** The store the migrations used, as the hosts name it. */
  storeRef: string;
  rawNatsRuns: RawNatsResult[];
  /** Empty for the directory store. */
  rawS3Runs: RawS3Result[];
  figures: RunFigures[];
}

function logRun(f: RunFigures): void {
  const check = f.outcome !== 'completed' ? `none (${f.outcome}: ${f.reason})` : f.pageCheckOk ? 'ok' : 'FAILED';
  const rounds = f.roundsDetail.map(
    (r) =>
      `${(r.throughputBytesPerSec / 1e6).toFixed(0)} MB/s ${r.lane} in ${(r.durationMs / 1000).toFixed(1)} s, ` +
      `lag ${(r.storeLagBytes / 1e6).toFixed(0)} MB`,
  );
  process.stderr.write(
    `${f.store} ${f.scenario} run ${f.run}: downtime ${f.downtimeMs.toFixed(1)} ms, total ${f.totalMs} ms, ` +
      `store lag at switchover ${(f.storeLagBytesAtSwitchover / 1e6).toFixed(1)} MB, check ${check}\n` +
      `  rounds: ${rounds.join('; ')}\n`,
  );
}

/**
 * Runs the benchmark on `store`; see the module comment. Throws if the cluster, a measurement or a
 * check fails; a migration that does not complete is recorded (RunFigures.outcome), not thrown.
 */
export async function benchStore(store: BenchStore, options: StoreBenchOptions): Promise<StoreBench> {
  const { runs, memoryBytes, messageBytes } = options;
  const cluster = await startTestCluster(['h1', 'h2'], { store });
  const ferry = await FerryClient.connect(cluster.temporal.address);
  try {
    const rawNatsRuns: RawNatsResult[] = [];
    for (let i = 0; i < runs; i += 1)
      rawNatsRuns.push(
        await measureRawNats(
          cluster.nats.url,
          cluster.nats.credentialsDir,
          messageBytes,
          Math.ceil(memoryBytes / (DEFAULT_BATCH_PAGES * 4096)),
          DEFAULT_CREDIT_WINDOW,
        ),
      );
    const rawS3Runs: RawS3Result[] = [];
    if (cluster.seaweed) {
      const { endpoint, region, accessKeyId, secretAccessKey } = cluster.seaweed;
      const target = { endpoint, region, accessKeyId, secretAccessKey, bucket: TEST_CLUSTER_BUCKET };
      for (let i = 0; i < runs; i += 1) {
        const raw = await measureRawS3(target, CHUNK_BYTES, RAW_S3_BYTES / CHUNK_BYTES, MAX_PARALLEL_UPLOADS);
        process.stderr.write(
          `raw S3 run ${i}: PUT ${(raw.putBytesPerSec / 1e6).toFixed(0)} MB/s, GET ${(raw.getBytesPerSec / 1e6).toFixed(0)} MB/s\n`,
        );
        rawS3Runs.push(raw);
      }
    }
    const figures: RunFigures[] = [];
    for (const scenario of SCENARIOS) {
      for (let run = 0; run < runs; run += 1) {
        const f = await migrateOnce(ferry, cluster.env.stateDir, store, scenario, memoryBytes, run);
        figures.push(f);
        logRun(f);
      }
    }
    return { store, storeRef: cluster.env.store, rawNatsRuns, rawS3Runs, figures };
  } finally {
    await ferry.close();
    await cluster.stop();
  }
}
