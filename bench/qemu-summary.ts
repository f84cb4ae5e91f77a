/**
 * The QEMU bench part's figures as the JSON keeps them (under `qemu`) and as the table prints
 * them: every run of ferry and of QEMU's own migration, the ratios ferry / QEMU per run and of the
 * medians (over the runs that completed), and the targets judged met or not met (never
 * asserted: a missed target is a finding, not a failure of the bench).
 */
import { median } from './store-summary';
import type { QemuFerryRun } from './qemu-ferry-run';
import type { QemuOwnRun } from './qemu-own-run';

/** ferry's total time may be at most this many times QEMU's own (medians). */
export const TOTAL_RATIO_TARGET = 1.5;
/** ferry's downtime may be at most this many times QEMU's own (medians). */
export const DOWNTIME_RATIO_TARGET = 2;

/** What the QEMU part ran with and measured. */
export interface QemuBench {
  memoryMib: number;
  fillMib: number;
  hotMib: number;
  rateMbPerSec: number;
  qemuVersion: string;
  qemuOwn: { downtimeLimitMs: number; maxBandwidthBytesPerSec: number; transport: string };
  ferryRuns: QemuFerryRun[];
  qemuRuns: QemuOwnRun[];
  natsKillRun?: QemuFerryRun;
  /** Set when the part could not run at all (QEMU missing, the cluster did not start). */
  error?: string;
}

/** A target and whether it was met. */
export interface QemuTarget {
  name: string;
  value: number | string | undefined;
  met: boolean;
}

/** The JSON's `qemu`. */
export interface QemuSummary extends QemuBench {
  ratios: Array<{ run: number; totalRatio?: number; downtimeRatio?: number }>;
  medians: {
    ferry: { totalMs: number; downtimeMs: number; bytesViaNetwork: number; bytesMirroredToStore: number };
    qemu: { totalMs: number; downtimeMs: number; bytesTransferred: number };
  };
  medianRatios: { total: number; downtime: number };
  targets: QemuTarget[];
  /** Every ferry run (the NATS-killed one included) completed with 0 differing pages. */
  allFerryPageChecksOk: boolean;
  /** Why there is no QEMU-own counterpart of the NATS-killed run. */
  natsKillNote: string;
}

const NATS_KILL_NOTE =
  "QEMU's own migration has a single TCP stream and no second path: when that link is lost the migration " +
  'fails (the source resumes) and must start again from zero, so there is no QEMU run to set beside the NATS-killed one.';

function defined(values: Array<number | undefined>): number[] {
  return values.filter((v): v is number => v !== undefined && Number.isFinite(v));
}

function exact(run: QemuFerryRun | undefined): boolean {
  return run !== undefined && run.ok && run.differingPages === 0 && run.guestCarriedOn === true;
}

/** Summarises `bench`; see the module comment. */
export function summarizeQemu(bench: QemuBench): QemuSummary {
  const ferryOk = bench.ferryRuns.filter((r) => r.ok);
  const qemuOk = bench.qemuRuns.filter((r) => r.ok);
  const medians = {
    ferry: {
      totalMs: median(defined(ferryOk.map((r) => r.totalMs))),
      downtimeMs: median(defined(ferryOk.map((r) => r.downtimeMs))),
      bytesViaNetwork: median(defined(ferryOk.map((r) => r.bytesViaNetwork))),
      bytesMirroredToStore: median(defined(ferryOk.map((r) => r.bytesMirroredToStore))),
    },
    qemu: {
      totalMs: median(defined(qemuOk.map((r) => r.totalMs))),
      downtimeMs: median(defined(qemuOk.map((r) => r.downtimeMs))),
      bytesTransferred: median(defined(qemuOk.map((r) => r.bytesTransferred))),
    },
  };
  const ratios = bench.ferryRuns.map((f) => {
    const q = bench.qemuRuns.find((r) => r.run === f.run);
    const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
      f.ok && q?.ok && a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
    const totalRatio = ratio(f.totalMs, q?.totalMs);
    const downtimeRatio = ratio(f.downtimeMs, q?.downtimeMs);
    return {
      run: f.run,
      ...(totalRatio !== undefined ? { totalRatio } : {}),
      ...(downtimeRatio !== undefined ? { downtimeRatio } : {}),
    };
  });
  const medianRatios = {
    total: medians.ferry.totalMs / medians.qemu.totalMs,
    downtime: medians.ferry.downtimeMs / medians.qemu.downtimeMs,
  };
  const allFerry = [...bench.ferryRuns, ...(bench.natsKillRun ? [bench.natsKillRun] : [])];
  const allFerryPageChecksOk = bench.error === undefined && allFerry.length > 0 && allFerry.every(exact);
  const targets: QemuTarget[] = [
    {
      name: `total ≤ ${TOTAL_RATIO_TARGET}× QEMU's own (median / median)`,
      value: medianRatios.total,
      met: medianRatios.total <= TOTAL_RATIO_TARGET,
    },
    {
      name: `downtime ≤ ${DOWNTIME_RATIO_TARGET}× QEMU's own (median / median)`,
      value: medianRatios.downtime,
      met: medianRatios.downtime <= DOWNTIME_RATIO_TARGET,
    },
    {
      name: '0 differing pages in every ferry run, guest program intact after',
      value: allFerry.map((r) => r.differingPages ?? 'none').join(','),
      met: allFerryPageChecksOk,
    },
    {
      name: 'NATS killed at 50% of round 0: completes from the page file',
      value: bench.natsKillRun?.outcome ?? bench.natsKillRun?.error ?? 'not run',
      met: exact(bench.natsKillRun),
    },
  ];
  return {
    ...bench,
    ratios,
    medians,
    medianRatios,
    targets,
    allFerryPageChecksOk,
    natsKillNote: NATS_KILL_NOTE,
  };
}
