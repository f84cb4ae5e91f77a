/**
 * How hard to slow the guest's vCPU after each pre-copy round, as pure functions (no I/O, no
 * clocks): the workflow replays them, unit tests call them with simulated rounds.
 *
 * - `sdps` (stun during page send): from the round's send rate S and dirty rate D, and the throttle
 *   t the round ran under, the guest's unthrottled dirty rate is D / (1 − t). When S / D falls below
 *   SDPS_ENGAGE_RATIO, the vCPU gets the run fraction that brings the unthrottled rate to
 *   SDPS_TARGET_SHARE of S, approached by SDPS_SMOOTHING per round so one noisy round does not
 *   swing it; once the guest would converge without it, it is lifted the same way.
 * - `auto-converge`: QEMU's law as a baseline. A round that dirtied more than 50% of what it sent
 *   counts; on the second such round the throttle starts at 20% or steps up 10%, up to 99%, and the
 *   count starts again. It is never lowered before the switchover.
 * - `none`: never throttles.
 *
 * The VMM applies a throttle as sleeps of at most 5 ms in every 10 ms (vmm/vcpu.ts); every policy's
 * throttle is lifted at the switchover.
 *
 * The workflow calls nextThrottle after every round (migrate-vm.ts); inside a long round after the
 * first, the source VMM samples the round so far and may raise an sdps throttle at once
 * (data-plane/round-throttle.ts). The constants come from a model of a hot-set guest
 * (test/unit/throttle-policy.test.ts), where a guest loses least work when throttled hard and
 * briefly: aiming at 70% of the send rate lost more than QEMU's law at 2× and 4×, aiming at 40%
 * less; `npm run bench -- --only convergence` measures them on real migrations.
 */

import { MAX_THROTTLE_PERCENT, THROTTLE_POLICIES, type ThrottlePolicy } from '../model';

export { MAX_THROTTLE_PERCENT, THROTTLE_POLICIES, type ThrottlePolicy };

/**
 * sdps engages when send rate ÷ dirty rate falls below this. A guest with a small hot set that it
 * rewrites fast shows a distinct-page dirty rate of only 0.85-0.95× the send rate (the set
 * saturates) and still never converges, so the ratio stays above 1. The needless throttles of the
 * first benchmark came from a one-round dip of the send rate and from sampling short rounds; the
 * send rate is now taken over a second of rounds (throttle-tracker.ts) and only long rounds are
 * sampled (data-plane/round-throttle.ts).
 */
export const SDPS_ENGAGE_RATIO = 1.25;
/** sdps aims the guest's dirty rate at this share of the send rate. */
export const SDPS_TARGET_SHARE = 0.4;
/** Share of the way from the current throttle to the target that sdps moves per round. */
export const SDPS_SMOOTHING = 0.8;
/** Below this, an sdps throttle counts as lifted (percent). */
export const SDPS_FLOOR_PERCENT = 1;
/** auto-converge: a round counts when it dirtied more than this share of what it sent. */
export const AUTO_CONVERGE_TRIGGER_SHARE = 0.5;
/** auto-converge: rounds that must count before the throttle moves. */
export const AUTO_CONVERGE_TRIGGER_COUNT = 2;
/** auto-converge: first throttle and step (percent). */
export const AUTO_CONVERGE_INITIAL_PERCENT = 20;
export const AUTO_CONVERGE_STEP_PERCENT = 10;

/** What a round measured, and the throttle it ran under. */
export interface ThrottleSample {
  /** Bytes per second the round sent. */
  sendRateBytesPerSec: number;
  /** Bytes per second the guest dirtied during the round. */
  dirtyRateBytesPerSec: number;
  /** Throttle the round ran under (percent). */
  throttlePercent: number;
}

/** What a policy carries from round to round. */
export interface ThrottleState {
  throttlePercent: number;
  /** auto-converge: rounds that counted since the throttle last moved. */
  highDirtyRounds: number;
}

/** The state before the first round, starting at `initialPercent` (e.g. the VM's last throttle). */
export function initialThrottleState(initialPercent = 0): ThrottleState {
  return { throttlePercent: clampPercent(initialPercent), highDirtyRounds: 0 };
}

function clampPercent(percent: number): number {
  if (!Number.isFinite(percent) || percent <= 0) return 0;
  return Math.min(MAX_THROTTLE_PERCENT, Math.round(percent * 10) / 10);
}

/** The throttle for the next round under `policy`, after a round that measured `sample`. */
export function nextThrottle(policy: ThrottlePolicy, state: ThrottleState, sample: ThrottleSample): ThrottleState {
  switch (policy) {
    case 'none':
      return { throttlePercent: 0, highDirtyRounds: 0 };
    case 'auto-converge':
      return autoConverge(state, sample);
    case 'sdps':
    case 'history':
      return { throttlePercent: sdpsThrottle(state.throttlePercent, sample), highDirtyRounds: 0 };
  }
}

/** The throttle that brings the unthrottled dirty rate to SDPS_TARGET_SHARE of the send rate. */
export function sdpsTargetPercent(sample: ThrottleSample): number {
  const { sendRateBytesPerSec: send, dirtyRateBytesPerSec: dirty } = sample;
  if (dirty <= 0 || send <= 0) return dirty <= 0 ? 0 : MAX_THROTTLE_PERCENT;
  const wanted = (SDPS_TARGET_SHARE * send) / unthrottledDirtyRate(sample);
  return wanted >= 1 ? 0 : clampPercent((1 - wanted) * 100);
}

/** The guest's dirty rate as it would be without the throttle the sample ran under. */
function unthrottledDirtyRate(sample: ThrottleSample): number {
  const runFraction = Math.max(1 - sample.throttlePercent / 100, 1 - MAX_THROTTLE_PERCENT / 100);
  return sample.dirtyRateBytesPerSec / runFraction;
}

function sdpsThrottle(current: number, sample: ThrottleSample): number {
  const engaged = current > 0 || sample.sendRateBytesPerSec < SDPS_ENGAGE_RATIO * sample.dirtyRateBytesPerSec;
  if (!engaged) return 0;
  // A guest that would stay under the engage ratio unthrottled no longer needs slowing: aiming at
  // SDPS_TARGET_SHARE would keep a gentle guest throttled for nothing.
  const needed = sample.sendRateBytesPerSec < SDPS_ENGAGE_RATIO * unthrottledDirtyRate(sample);
  const target = needed ? sdpsTargetPercent(sample) : 0;
  const next = current + SDPS_SMOOTHING * (target - current);
  return next < SDPS_FLOOR_PERCENT ? 0 : clampPercent(next);
}

function autoConverge(state: ThrottleState, sample: ThrottleSample): ThrottleState {
  const high = sample.dirtyRateBytesPerSec > AUTO_CONVERGE_TRIGGER_SHARE * sample.sendRateBytesPerSec;
  const count = high ? state.highDirtyRounds + 1 : state.highDirtyRounds;
  if (count < AUTO_CONVERGE_TRIGGER_COUNT) return { throttlePercent: state.throttlePercent, highDirtyRounds: count };
  const throttlePercent =
    state.throttlePercent === 0
      ? AUTO_CONVERGE_INITIAL_PERCENT
      : Math.min(MAX_THROTTLE_PERCENT, state.throttlePercent + AUTO_CONVERGE_STEP_PERCENT);
  return { throttlePercent, highDirtyRounds: 0 };
}

/**
 * The share of the work the guest would have done that a throttle over time took from it: the
 * time-weighted mean throttle of `periods` (each a throttle in percent and how long it held).
 */
export function guestWorkLostShare(periods: readonly { throttlePercent: number; durationMs: number }[]): number {
  const total = periods.reduce((sum, p) => sum + p.durationMs, 0);
  if (total <= 0) return 0;
  return periods.reduce((sum, p) => sum + (p.throttlePercent / 100) * p.durationMs, 0) / total;
}
