/**
 * The QEMU part of the benchmark (issue 12): a 1 GiB QEMU guest (TCG) whose program fills the
 * most it can (maxGuestFillMib(1024) = 832 MiB) with random data and rewrites a 64 MiB hot set at
 * 50 MB/s, migrated `runs` times by ferry (qemu-ferry-run.ts) and, after each, once by QEMU's own
 * migration over loopback TCP (qemu-own-run.ts), never both at once; then a fourth ferry run with
 * nats-server SIGKILLed at half of round 0. Every run starts from a fresh guest and destroys it.
 *
 * The part starts a cluster of its own (directory store) and stops it before returning. A run
 * that fails is kept with its error; a part that cannot run at all (QEMU not installable, the
 * cluster does not start) comes back with `error` and the runs it has. Nothing is left behind:
 * QEMU processes die with their VMMs or are destroyed, RAM files are removed, and a check after
 * the cluster stopped reports (and removes) any RAM file of the part still in /dev/shm.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryClient } from '../cli/ferry-client';
import { guestKernelCommandLine, maxGuestFillMib, prepareQemuHost } from '../infra/qemu';
import { startTestCluster, type TestCluster } from '../harness/test-cluster';
import { DEFAULT_QEMU_BINARY, defaultShmDir, memwriterArgs } from '../vmm/qemu';
import type { Workload } from '../vmm/workload';
import { ferryQemuMigration, type QemuFerryRun } from './qemu-ferry-run';
import { QEMU_OWN_DOWNTIME_LIMIT_MS, QEMU_OWN_MAX_BANDWIDTH, qemuOwnMigration, type QemuOwnRun } from './qemu-own-run';
import type { QemuBench } from './qemu-summary';

/** Guest RAM of the QEMU part, MiB. */
export const QEMU_BENCH_MEMORY_MIB = 1024;
/** Hot set the guest program rewrites, MiB. */
export const QEMU_BENCH_HOT_MIB = 64;
/** Rate at which it rewrites it, MB/s. */
export const QEMU_BENCH_RATE_MB_PER_SEC = 50;
/** Heartbeats (100 ms apart, after the fill) a source prints before its migration starts. */
const WARM_HEARTBEATS = 10;
/** How long a 1 GiB TCG guest may take to boot and fill, ms. */
const BOOT_TIMEOUT_MS = 180_000;
/** Prefix of the part's VM ids (so of its RAM files and QEMU names). */
const VM_PREFIX = 'qbench-';

/** How much to run. */
export interface QemuBenchOptions {
  runs: number;
}

function qemuVersion(): string {
  try {
    return execFileSync(DEFAULT_QEMU_BINARY, ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function logFerry(f: QemuFerryRun): void {
  process.stderr.write(
    `qemu ferry run ${f.run}${f.natsKilled ? ' (NATS killed)' : ''}: ` +
      (f.ok
        ? `total ${f.totalMs?.toFixed(0)} ms, downtime ${f.downtimeMs?.toFixed(1)} ms, differing pages ${f.differingPages}, ` +
          `guest carried on ${f.guestCarriedOn}\n`
        : `FAILED: ${f.error}\n`),
  );
}

function logQemu(q: QemuOwnRun): void {
  process.stderr.write(
    `qemu own run ${q.run}: ` +
      (q.ok
        ? `total ${q.totalMs?.toFixed(0)} ms, downtime ${q.downtimeMs?.toFixed(1)} ms, differing pages ${q.differingPages}, ` +
          `guest ${JSON.stringify(q.guestAfterResume)}\n`
        : `FAILED: ${q.error}\n`),
  );
}

/** Removes RAM files of this part left in /dev/shm (there should be none); returns their names. */
function sweepRamFiles(): string[] {
  const dir = defaultShmDir();
  const left = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith(VM_PREFIX)) : [];
  for (const f of left) fs.rmSync(path.join(dir, f), { force: true });
  return left;
}

/** Runs the QEMU part; see the module comment. Throws only for a bad `runs`. */
export async function benchQemu(options: QemuBenchOptions): Promise<QemuBench & { leftoverRamFiles: string[] }> {
  const memoryMib = QEMU_BENCH_MEMORY_MIB;
  const fillMib = maxGuestFillMib(memoryMib);
  const workload: Workload = {
    type: 'hotset',
    hotSetBytes: QEMU_BENCH_HOT_MIB * 2 ** 20,
    rateBytesPerSec: QEMU_BENCH_RATE_MB_PER_SEC * 1e6,
  };
  const bench: QemuBench = {
    memoryMib,
    fillMib,
    hotMib: QEMU_BENCH_HOT_MIB,
    rateMbPerSec: QEMU_BENCH_RATE_MB_PER_SEC,
    qemuVersion: qemuVersion(),
    qemuOwn: {
      downtimeLimitMs: QEMU_OWN_DOWNTIME_LIMIT_MS,
      maxBandwidthBytesPerSec: QEMU_OWN_MAX_BANDWIDTH,
      transport: 'loopback TCP, RAM sent by QEMU (no x-ignore-shared)',
    },
    ferryRuns: [],
    qemuRuns: [],
  };
  // The same guest program arguments ferry's QEMU driver derives from the workload.
  const kernelCommandLine = guestKernelCommandLine(memwriterArgs(workload, fillMib));
  const root = fs.mkdtempSync('/tmp/ferry-qbench-');
  let cluster: TestCluster | undefined;
  let ferry: FerryClient | undefined;
  try {
    const host = await prepareQemuHost();
    if (!host.ready) throw new Error(`QEMU is not usable here: ${host.reason}`);
    cluster = await startTestCluster(['h1', 'h2'], { store: 'directory' });
    ferry = await FerryClient.connect(cluster.temporal.address);
    const common = { ferry, cluster, memoryBytes: memoryMib * 2 ** 20, workload, warmHeartbeats: WARM_HEARTBEATS };
    for (let run = 0; run < options.runs; run += 1) {
      const f = await ferryQemuMigration({ ...common, run, bootTimeoutMs: BOOT_TIMEOUT_MS });
      bench.ferryRuns.push(f);
      logFerry(f);
      const q = await qemuOwnMigration({
        run,
        image: host.image,
        memoryMib,
        kernelCommandLine,
        root,
        warmHeartbeats: WARM_HEARTBEATS,
        bootTimeoutMs: BOOT_TIMEOUT_MS,
      });
      bench.qemuRuns.push(q);
      logQemu(q);
    }
    try {
      const k = await ferryQemuMigration({
        ...common,
        run: options.runs,
        bootTimeoutMs: BOOT_TIMEOUT_MS,
        killNatsAtHalf: true,
      });
      bench.natsKillRun = k;
      logFerry(k);
    } finally {
      await cluster.nats.restart().catch(() => undefined);
    }
  } catch (error) {
    bench.error = (error as Error).message;
  } finally {
    await ferry?.close().catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  }
  const leftoverRamFiles = sweepRamFiles();
  if (leftoverRamFiles.length > 0)
    process.stderr.write(`qemu: removed leftover RAM files ${leftoverRamFiles.join(' ')}\n`);
  return { ...bench, leftoverRamFiles };
}
