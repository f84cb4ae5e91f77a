/**
 * The convergence benchmark's scenarios: a hot-set guest asked to write at a multiple of the send
 * rate S measured in the same run, under each throttle policy. The full set is 0.5×, 1×, 2× and
 * 4× S, each with a 128 MiB and a 512 MiB hot set; the reduced set (for a shorter run) keeps both
 * hot sets for 2× and 4× and one of 256 MiB for 0.5× and 1×. Hot sets are for a 1 GiB guest and
 * scale with a smaller one (a quick run with --memory 256MiB), so they keep their share of memory.
 */
import type { Workload } from '../vmm/vcpu';
import type { ThrottlePolicy } from '../workflows/throttle-policy';

/** The policies each scenario runs under, in the order of a run. */
export const CONVERGENCE_POLICIES: readonly ThrottlePolicy[] = ['none', 'auto-converge', 'sdps', 'history'];

/** Round limit of every benchmark migration, whatever its policy. */
export const CONVERGENCE_MAX_ROUNDS = 15;

/** Downtime limit of every benchmark migration: the default (ms). */
export const CONVERGENCE_DOWNTIME_LIMIT_MS = 300;

/** Guest write rates asked for, as multiples of the measured send rate. */
export const WRITE_RATE_MULTIPLES: readonly number[] = [0.5, 1, 2, 4];

/** Which scenarios to run: every multiple with both hot sets, or fewer hot sets at the low ones. */
export type ScenarioSet = 'full' | 'reduced';

const MIB = 2 ** 20;
const HOT_SETS_MIB: Record<ScenarioSet, (multiple: number) => number[]> = {
  full: () => [128, 512],
  reduced: (multiple) => (multiple < 2 ? [256] : [128, 512]),
};

/** One scenario: a hot-set workload asked to write at `multiple` × S. */
export interface ConvergenceScenario {
  /** e.g. `2x-512MiB`. */
  name: string;
  multiple: number;
  hotSetBytes: number;
  askedWriteRateBytesPerSec: number;
  workload: Workload;
}

/** The scenario whose first run is plotted: 2× S with the biggest hot set. */
export function plottedScenario(scenarios: readonly ConvergenceScenario[]): ConvergenceScenario | undefined {
  const candidates = scenarios.filter((s) => s.multiple === 2);
  return candidates.sort((a, b) => b.hotSetBytes - a.hotSetBytes)[0];
}

/**
 * The scenarios of `set` for a guest of `memoryBytes`, from send rate `sendRateBytesPerSec`.
 * Throws if the send rate is not a positive number (the idle migration measured nothing).
 */
export function convergenceScenarios(
  set: ScenarioSet,
  sendRateBytesPerSec: number,
  memoryBytes: number,
): ConvergenceScenario[] {
  if (!(sendRateBytesPerSec > 0))
    throw new Error(`the send rate must be positive to scale the scenarios, got ${sendRateBytesPerSec} B/s`);
  const scale = Math.min(1, memoryBytes / 2 ** 30);
  return WRITE_RATE_MULTIPLES.flatMap((multiple) =>
    HOT_SETS_MIB[set](multiple).map((hotMiB) => {
      const hotSetBytes = Math.max(4096, Math.floor((hotMiB * MIB * scale) / 4096) * 4096);
      const askedWriteRateBytesPerSec = Math.round(multiple * sendRateBytesPerSec);
      return {
        name: `${multiple}x-${Math.round(hotSetBytes / MIB)}MiB`,
        multiple,
        hotSetBytes,
        askedWriteRateBytesPerSec,
        workload: { type: 'hotset', hotSetBytes, rateBytesPerSec: askedWriteRateBytesPerSec },
      };
    }),
  );
}

/** Parses --scenarios; throws naming the bad value. */
export function parseScenarioSet(value: string): ScenarioSet {
  if (value === 'full' || value === 'reduced') return value;
  throw new Error(`--scenarios must be full or reduced, got ${JSON.stringify(value)}`);
}
