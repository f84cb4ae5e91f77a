/**
 * The throttle side of one migration, as the workflow keeps it: the policy's state from round to
 * round, a throttle pinned by request, and what the result reports about the guest's slowdown.
 * Deterministic (no I/O, no clocks): the workflow replays it, unit tests drive it with rounds.
 */
import type { RoundStats, RoundThrottleInput, ThrottleChange } from '../model/protocol';
import type { VmHistoryRecord } from '../store/vm-history';
import { measuredThroughputBytesPerSec } from './policy';
import {
  initialThrottleState,
  nextThrottle,
  type ThrottlePolicy,
  type ThrottleSample,
  type ThrottleState,
} from './throttle-policy';

/** What the result says about the throttle and the guest's slowdown. */
export interface ThrottleSummary {
  policy: ThrottlePolicy;
  /**
   * Throttle the round after round 0 starts from at least: the history record's, or 0. Round 0
   * itself is not throttled from a record (see ThrottleTracker).
   */
  startPercent: number;
  /** `history` policy: the record the first round started from, or null if the store had none. */
  history?: Pick<VmHistoryRecord, 'migrationId' | 'at' | 'throttlePercent' | 'rounds'> | null;
  /**
   * Share of the work the guest would have done during pre-copy that the throttle took: the time
   * the throttle descheduled the vCPU ÷ the time it was meant to run, measured on the vCPU.
   */
  workLostShare: number;
  /** Time the throttle descheduled the vCPU during pre-copy, and the time it ran (ms). */
  throttledMs: number;
  guestRunMs: number;
  maxPercent: number;
  /** Throttle the last pre-copy round ended with: the one the migration converged under. */
  finalPercent: number;
  /** Throttle changes made by request while the migration ran. */
  requests: number;
  /** Every change of the throttle, in order (times from the source's start of the migration). */
  timeline: ThrottleChange[];
}

/** Percent with one decimal. */
function tenth(value: number): number {
  return Math.round(value * 10) / 10;
}

/** The share of a round's time the throttle took (percent), measured; 0 without figures. */
export function measuredThrottlePercent(stats: RoundStats): number {
  const t = stats.throttle;
  if (!t) return stats.vcpu.throttlePercent;
  const active = t.runMs + t.throttledMs;
  return active > 0 ? tenth((t.throttledMs / active) * 100) : t.endPercent;
}

/**
 * Send rate is taken over at least this much of the latest rounds (ms): a short round's rate swings
 * with the machine (125-290 MB/s between neighbouring rounds in the first benchmark), and one dip
 * must not throttle a guest that converges without it.
 */
export const SEND_RATE_WINDOW_MS = 1_000;

/**
 * The policy's input after the last of `rounds`: its dirty rate and the throttle it ran under, and
 * the send rate over the latest SEND_RATE_WINDOW_MS of rounds.
 */
export function throttleSample(rounds: readonly RoundStats[]): ThrottleSample {
  const stats = rounds[rounds.length - 1] as RoundStats;
  return {
    sendRateBytesPerSec: measuredThroughputBytesPerSec(rounds, SEND_RATE_WINDOW_MS),
    dirtyRateBytesPerSec: stats.dirtyRateBytesPerSec,
    throttlePercent: measuredThrottlePercent(stats),
  };
}

/**
 * The workflow's throttle bookkeeping for one migration.
 *
 * `history` applies the VM's recorded throttle from round 1 on, not to round 0: round 0 sends all
 * of memory and lasts longest, and a guest that rewrites a hot set dirties the whole set during it
 * however slowly it runs, so a throttle then costs the guest work and buys nothing (the first
 * benchmark run lost 62% of a 1× guest's time to a recorded 64% held through round 0). From round
 * 1 on, where each round's dirtying is what the next must send, the record spares the rounds sdps
 * would spend ramping up to it.
 */
export class ThrottleTracker {
  private state: ThrottleState;
  private pinned: number | undefined;
  private history: ThrottleSummary['history'];
  /** Throttle the round after round 0 starts from at least (percent). */
  readonly startPercent: number;

  constructor(
    readonly policy: ThrottlePolicy,
    history?: VmHistoryRecord | null,
  ) {
    this.state = initialThrottleState(0);
    this.startPercent = initialThrottleState(
      policy === 'history' ? (history?.throttlePercent ?? 0) : 0,
    ).throttlePercent;
    if (policy === 'history')
      this.history = history
        ? {
            migrationId: history.migrationId,
            at: history.at,
            throttlePercent: history.throttlePercent,
            rounds: history.rounds,
          }
        : null;
  }

  /** The throttle the next round starts with (percent). */
  get percent(): number {
    return this.pinned ?? this.state.throttlePercent;
  }

  /** The throttle pinned by request, if any. */
  get pinnedPercent(): number | undefined {
    return this.pinned;
  }

  /** What the source is told for the next round. */
  roundInput(): RoundThrottleInput {
    const adaptive = this.policy === 'sdps' || this.policy === 'history';
    return { policy: this.policy, percent: this.percent, adjustWithinRound: adaptive && this.pinned === undefined };
  }

  /** Pins the throttle at `percent` from now on, or hands it back to the policy (null). */
  pin(percent: number | null): void {
    if (percent === null) {
      // The policy goes on from the throttle the guest runs under now.
      if (this.pinned !== undefined) this.state = { ...this.state, throttlePercent: this.pinned };
      this.pinned = undefined;
    } else {
      this.pinned = percent;
    }
  }

  /** Whether an sdps or history throttle is engaged (the switchover then keeps a margin, see policy.ts). */
  get engaged(): boolean {
    return (this.policy === 'sdps' || this.policy === 'history') && this.percent > 0;
  }

  /** Takes the last of `rounds` into account: the policy's throttle for the next one. */
  afterRound(rounds: readonly RoundStats[]): void {
    const stats = rounds[rounds.length - 1];
    if (!stats) return;
    const current = stats.throttle?.endPercent ?? this.state.throttlePercent;
    this.state = nextThrottle(this.policy, { ...this.state, throttlePercent: current }, throttleSample(rounds));
    if (stats.round === 0 && this.startPercent > this.state.throttlePercent)
      this.state = { ...this.state, throttlePercent: this.startPercent };
  }

  /** The summary for the result, from the rounds so far. */
  summary(rounds: readonly RoundStats[]): ThrottleSummary {
    const timeline = rounds.flatMap((r) => r.throttle?.changes ?? []);
    const throttledMs = rounds.reduce((sum, r) => sum + (r.throttle?.throttledMs ?? 0), 0);
    const guestRunMs = rounds.reduce((sum, r) => sum + (r.throttle?.runMs ?? 0), 0);
    const percents = rounds.flatMap((r) => (r.throttle ? [r.throttle.startPercent, r.throttle.endPercent] : []));
    const last = rounds[rounds.length - 1];
    return {
      policy: this.policy,
      startPercent: this.startPercent,
      ...(this.history !== undefined ? { history: this.history } : {}),
      workLostShare: throttledMs + guestRunMs > 0 ? throttledMs / (throttledMs + guestRunMs) : 0,
      throttledMs: Math.round(throttledMs),
      guestRunMs: Math.round(guestRunMs),
      maxPercent: Math.max(0, ...percents, ...timeline.map((c) => c.percent)),
      finalPercent: last?.throttle?.endPercent ?? 0,
      requests: timeline.filter((c) => c.why === 'request').length,
      timeline,
    };
  }
}

/** The record a converged migration leaves for the VM's next one. */
export function historyRecord(args: {
  vmId: string;
  migrationId: string;
  at: string;
  sourceHost: string;
  destinationHost: string;
  summary: ThrottleSummary;
  rounds: readonly RoundStats[];
}): VmHistoryRecord {
  const last = args.rounds[args.rounds.length - 1];
  return {
    vmId: args.vmId,
    migrationId: args.migrationId,
    at: args.at,
    sourceHost: args.sourceHost,
    destinationHost: args.destinationHost,
    policy: args.summary.policy,
    throttlePercent: args.summary.finalPercent,
    maxThrottlePercent: args.summary.maxPercent,
    rounds: args.rounds.length,
    sendRateBytesPerSec: Math.round(last?.throughputBytesPerSec ?? 0),
    dirtyRateBytesPerSec: Math.round(last?.dirtyRateBytesPerSec ?? 0),
  };
}
