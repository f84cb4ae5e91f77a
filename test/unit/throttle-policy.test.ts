import {
  AUTO_CONVERGE_INITIAL_PERCENT,
  guestWorkLostShare,
  initialThrottleState,
  MAX_THROTTLE_PERCENT,
  nextThrottle,
  sdpsTargetPercent,
  type ThrottlePolicy,
} from '../../workflows/throttle-policy';

/** A pre-copy in a simple model: the guest dirties a hot set at `dirtyRatio` × the send rate. */
function simulate(policy: ThrottlePolicy, dirtyRatio: number, initialPercent = 0) {
  const sendRate = 100e6;
  const hotSet = 256e6;
  const downtimeLimitSec = 0.3;
  let remaining = 1024e6;
  let state = initialThrottleState(initialPercent);
  const periods: { throttlePercent: number; durationMs: number }[] = [];
  for (let round = 1; round <= 30; round += 1) {
    const seconds = remaining / sendRate;
    const dirtyRate = dirtyRatio * sendRate * (1 - state.throttlePercent / 100);
    periods.push({ throttlePercent: state.throttlePercent, durationMs: seconds * 1000 });
    remaining = Math.min(hotSet, dirtyRate * seconds);
    if (remaining / sendRate <= downtimeLimitSec) return { converged: true, rounds: round, periods, state };
    state = nextThrottle(policy, state, {
      sendRateBytesPerSec: sendRate,
      dirtyRateBytesPerSec: dirtyRate,
      throttlePercent: state.throttlePercent,
    });
  }
  return { converged: false, rounds: 30, periods, state };
}

describe('throttle policies', () => {
  it('none converges only a guest that dirties slower than pages leave', () => {
    expect(simulate('none', 0.5).converged).toBe(true);
    for (const ratio of [1, 2, 4]) expect(simulate('none', ratio).converged).toBe(false);
  });

  it.each([1, 2, 4])('sdps converges a guest dirtying %d× the send rate', (ratio) => {
    expect(simulate('sdps', ratio).converged).toBe(true);
    expect(simulate('auto-converge', ratio).converged).toBe(true);
  });

  // In this model a guest loses least when throttled hard and briefly; at 1× QEMU's gentle 20-40%
  // still wins (0.106 against 0.159 of the guest's work): the target is not met there yet.
  it.each([2, 4])('sdps costs a guest dirtying %d× the send rate less work than auto-converge', (ratio) => {
    const sdps = guestWorkLostShare(simulate('sdps', ratio).periods);
    const qemu = guestWorkLostShare(simulate('auto-converge', ratio).periods);
    expect(sdps).toBeLessThan(qemu);
  });

  it('sdps lifts a throttle the guest no longer needs, in steps', () => {
    // A gentle guest started from a history record of 55%: unthrottled it dirties 0.5× the send rate.
    const run = simulate('sdps', 0.5, 55);
    expect(run.converged).toBe(true);
    const percents = run.periods.map((p) => p.throttlePercent);
    expect(percents[0]).toBe(55);
    for (let i = 1; i < percents.length; i += 1) expect(percents[i]).toBeLessThan(percents[i - 1] as number);
    // One that still needs it keeps it.
    const busy = nextThrottle('sdps', initialThrottleState(55), {
      sendRateBytesPerSec: 100e6,
      dirtyRateBytesPerSec: 45e6,
      throttlePercent: 55,
    });
    expect(busy.throttlePercent).toBeGreaterThan(50);
  });

  it('sdps leaves a guest alone that converges without it', () => {
    const run = simulate('sdps', 0.5);
    expect(run.converged).toBe(true);
    expect(run.periods.every((p) => p.throttlePercent === 0)).toBe(true);
  });

  it("sdps started from the VM's last throttle converges in fewer rounds", () => {
    const first = simulate('sdps', 2);
    const second = simulate('sdps', 2, first.state.throttlePercent);
    expect(second.rounds).toBeLessThan(first.rounds);
  });

  it('sdps aims at the run fraction that brings the unthrottled dirty rate under the send rate', () => {
    // Unthrottled 200 MB/s (100 MB/s measured at 50%), 100 MB/s out: run 20% of the time.
    expect(sdpsTargetPercent({ sendRateBytesPerSec: 100e6, dirtyRateBytesPerSec: 100e6, throttlePercent: 50 })).toBe(
      80,
    );
    expect(sdpsTargetPercent({ sendRateBytesPerSec: 100e6, dirtyRateBytesPerSec: 10e6, throttlePercent: 0 })).toBe(0);
    expect(sdpsTargetPercent({ sendRateBytesPerSec: 0, dirtyRateBytesPerSec: 10e6, throttlePercent: 0 })).toBe(
      MAX_THROTTLE_PERCENT,
    );
  });

  it("auto-converge follows QEMU's law: 20% on the second high round, then +10% every second one, capped at 99%", () => {
    let state = initialThrottleState();
    const high = { sendRateBytesPerSec: 100e6, dirtyRateBytesPerSec: 60e6, throttlePercent: 0 };
    const seen: number[] = [];
    for (let round = 0; round < 24; round += 1) {
      state = nextThrottle('auto-converge', state, { ...high, throttlePercent: state.throttlePercent });
      seen.push(state.throttlePercent);
    }
    expect(seen.slice(0, 6)).toEqual([0, AUTO_CONVERGE_INITIAL_PERCENT, 20, 30, 30, 40]);
    expect(Math.max(...seen)).toBe(MAX_THROTTLE_PERCENT);
    // A low round does not count, and the throttle is not lowered before the switchover.
    const low = nextThrottle('auto-converge', state, { ...high, dirtyRateBytesPerSec: 10e6 });
    expect(low.throttlePercent).toBe(state.throttlePercent);
  });

  it('weights guest work lost by how long each throttle held', () => {
    expect(
      guestWorkLostShare([
        { throttlePercent: 0, durationMs: 3000 },
        { throttlePercent: 50, durationMs: 1000 },
      ]),
    ).toBeCloseTo(0.125);
    expect(guestWorkLostShare([])).toBe(0);
  });
});
