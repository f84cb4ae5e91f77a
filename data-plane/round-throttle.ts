/**
 * The vCPU throttle of one outgoing migration, in the source VMM: it sets the throttle each round
 * starts with (the workflow's decision), logs every change, measures on the vCPU's own counters how
 * much of the guest's time the throttle took, and inside a long round after the first samples the
 * round so far every ROUND_SAMPLE_MS once it has run ROUND_SAMPLE_AFTER_MS.
 *
 * Sampling only raises an sdps throttle: the round's dirty rate so far (distinct pages dirtied
 * since the round began ÷ time) against its send rate so far, through the same pure function the
 * workflow uses between rounds (workflows/throttle-policy.ts). Lowering waits for the round's end,
 * when the whole round is measured. Round 0 is never sampled: it sends every page once, and what a
 * guest dirties meanwhile is sent again by round 1 however hard it is throttled, so slowing it then
 * would cost the guest work and buy nothing.
 */
import type { GuestCpu, GuestPages } from '../vmm/guest-port';
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import type { VcpuStats } from '../vmm/vcpu';
import { nextThrottle } from '../workflows/throttle-policy';
import type { RoundThrottleInput, RoundThrottleStats, ThrottleChange } from '../model/protocol';

/** How often a round is sampled (ms). */
export const ROUND_SAMPLE_MS = 250;
/**
 * Samples act only once a round has run this long (ms). A short round ends before its rates say
 * much, and early in any round the dirty rate counts mostly first writes to a hot set the round
 * has not yet saturated: the first benchmark throttled 128 MiB hot sets that converged without it.
 */
export const ROUND_SAMPLE_AFTER_MS = 1_000;

/** Counters of the vCPU at some moment, to measure an interval against. */
interface VcpuMark {
  at: number;
  runMs: number;
  throttledMs: number;
  pagesWritten: number;
}

function mark(stats: VcpuStats): VcpuMark {
  return {
    at: performance.now(),
    runMs: stats.runMs,
    throttledMs: stats.throttledMs,
    pagesWritten: stats.pagesWritten,
  };
}

/** The throttle of one migration on its source; one round at a time. */
export class MigrationThrottle {
  private readonly startedAt = performance.now();
  private changes: ThrottleChange[] = [];
  private round = -1;
  private roundMark: VcpuMark | undefined;
  private startPercent = 0;
  private timer: NodeJS.Timeout | undefined;
  /** A sample is counting dirty pages now. */
  private sampling = false;
  /** Set by a request: no sampling until the workflow sends a round that is not pinned. */
  private pinned = false;

  constructor(
    private readonly vcpu: GuestCpu,
    private readonly memory: GuestPages,
  ) {}

  /** The throttle in force (percent). */
  get percent(): number {
    return this.vcpu.stats().throttlePercent;
  }

  /**
   * Starts round `round` under `input`; `bytesSent` tells how much the round has sent so far.
   * An absent input leaves the throttle as it is (a workflow older than throttling).
   */
  beginRound(round: number, input: RoundThrottleInput | undefined, bytesSent: () => number): void {
    this.stopSampling();
    this.round = round;
    if (input) {
      this.pinned = !input.adjustWithinRound;
      this.set(input.percent, 'round');
    }
    this.startPercent = this.percent;
    this.roundMark = mark(this.vcpu.stats());
    if (input?.adjustWithinRound && round > 0) {
      const policy = input.policy;
      this.timer = setInterval(() => void this.sample(policy, bytesSent()), ROUND_SAMPLE_MS);
      this.timer.unref();
    }
  }

  /** Ends the round: its throttle figures, with the changes made since the last round ended. */
  endRound(): RoundThrottleStats {
    this.stopSampling();
    const now = mark(this.vcpu.stats());
    const from = this.roundMark ?? now;
    const seconds = Math.max(now.at - from.at, 1) / 1000;
    const changes = this.changes;
    this.changes = [];
    return {
      startPercent: this.startPercent,
      endPercent: this.percent,
      runMs: now.runMs - from.runMs,
      throttledMs: now.throttledMs - from.throttledMs,
      guestWriteRateBytesPerSec: ((now.pagesWritten - from.pagesWritten) * PAGE_SIZE_BYTES) / seconds,
      changes,
    };
  }

  /** A throttle asked for while the migration runs: applied now, no sampling until the next round. */
  request(percent: number): void {
    this.pinned = true;
    this.stopSampling();
    this.set(percent, 'request');
  }

  /** Lifts the throttle (at stun, or when the migration ends without a handover). */
  lift(): void {
    this.stopSampling();
    if (this.percent !== 0) this.set(0, 'lifted');
  }

  /**
   * One sample within a round. Counting the dirty pages may take a scan of guest memory (QEMU), so
   * samples never overlap, and one that ends after its round did changes nothing.
   */
  private async sample(policy: RoundThrottleInput['policy'], bytesSent: number): Promise<void> {
    const from = this.roundMark;
    if (!from || this.pinned || this.sampling) return;
    if (performance.now() - from.at < ROUND_SAMPLE_AFTER_MS || bytesSent <= 0) return;
    this.sampling = true;
    let pendingDirtyPages: number;
    try {
      pendingDirtyPages = await this.memory.pendingDirtyCount();
    } catch {
      return;
    } finally {
      this.sampling = false;
    }
    if (this.roundMark !== from || this.timer === undefined || this.pinned) return;
    const now = mark(this.vcpu.stats());
    const seconds = (now.at - from.at) / 1000;
    const active = now.runMs - from.runMs + (now.throttledMs - from.throttledMs);
    const current = this.percent;
    const next = nextThrottle(
      policy,
      { throttlePercent: current, highDirtyRounds: 0 },
      {
        sendRateBytesPerSec: bytesSent / seconds,
        dirtyRateBytesPerSec: (pendingDirtyPages * PAGE_SIZE_BYTES) / seconds,
        throttlePercent: active > 0 ? ((now.throttledMs - from.throttledMs) / active) * 100 : current,
      },
    ).throttlePercent;
    if (next > current) this.set(next, 'sample');
  }

  private set(percent: number, why: ThrottleChange['why']): void {
    const before = this.percent;
    this.vcpu.setThrottle(percent);
    if (percent !== before || why === 'request')
      this.changes.push({ atMs: Math.round(performance.now() - this.startedAt), round: this.round, percent, why });
  }

  private stopSampling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
