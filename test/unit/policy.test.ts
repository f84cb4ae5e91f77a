import {
  DEFAULT_BATCH_PAGES,
  DEFAULT_COMPLETION_BUDGET_SEC_PER_GIB,
  DEFAULT_CREDIT_WINDOW,
  DEFAULT_DOWNTIME_LIMIT_MS,
  DEFAULT_MAX_ROUNDS,
  decideNextStep,
  expectedDowntimeMs,
  measuredThroughputBytesPerSec,
  resolveMigrationOptions,
  type MigrationOptions,
  type RoundSample,
} from '../../workflows/policy';

const PAGE = 4096;
const GIB = 2 ** 30;

/** A round that sent `bytesSent` in `durationMs` and left `pendingDirtyPages` dirty. */
function round(n: number, bytesSent: number, durationMs: number, pendingDirtyPages: number): RoundSample {
  return { round: n, bytesSent, durationMs, pendingDirtyPages };
}

describe('resolveMigrationOptions', () => {
  it('fills in every default when no policy is given', () => {
    expect(resolveMigrationOptions(undefined)).toEqual({
      downtimeLimitMs: DEFAULT_DOWNTIME_LIMIT_MS,
      maxRounds: DEFAULT_MAX_ROUNDS,
      completionBudgetSecPerGiB: DEFAULT_COMPLETION_BUDGET_SEC_PER_GIB,
      onGiveUp: 'abort',
      throttle: 'sdps',
      store: undefined,
      batchPages: DEFAULT_BATCH_PAGES,
      creditWindow: DEFAULT_CREDIT_WINDOW,
      keepSourceAfterSwitchover: false,
      keepPageFile: false,
      switchoverEagerly: false,
      encrypt: false,
    });
    expect(DEFAULT_DOWNTIME_LIMIT_MS).toBe(300);
    expect(resolveMigrationOptions({})).toEqual(resolveMigrationOptions(undefined));
  });

  it('keeps the values a user gave', () => {
    const options: MigrationOptions = {
      downtimeLimitMs: 500,
      maxRounds: 4,
      completionBudgetSecPerGiB: 10,
      onGiveUp: 'force-switchover',
      throttle: 'auto-converge',
      store: 's3://ferry-pages/fleet-a',
      batchPages: 64,
      creditWindow: 8,
      keepSourceAfterSwitchover: true,
      keepPageFile: true,
      switchoverEagerly: true,
      encrypt: true,
    };
    expect(resolveMigrationOptions(options)).toEqual({ ...options });
    // storeDir is the older name of a directory store.
    expect(resolveMigrationOptions({ storeDir: '/mnt/shared' }).store).toBe('/mnt/shared');
  });

  it('returns a new object and leaves its input untouched', () => {
    const input: MigrationOptions = Object.freeze({ downtimeLimitMs: 200 });
    const resolved = resolveMigrationOptions(input);
    expect(resolved).not.toBe(input);
    expect(input).toEqual({ downtimeLimitMs: 200 });
    resolved.maxRounds = 1;
    expect(resolveMigrationOptions(input).maxRounds).toBe(DEFAULT_MAX_ROUNDS);
  });

  it.each<[string, MigrationOptions, string]>([
    ['a negative downtime limit', { downtimeLimitMs: -5 }, 'downtimeLimitMs must be a positive integer, got -5'],
    ['a zero downtime limit', { downtimeLimitMs: 0 }, 'downtimeLimitMs must be a positive integer, got 0'],
    ['a fractional round limit', { maxRounds: 2.5 }, 'maxRounds must be a positive integer up to 1000, got 2.5'],
    [
      'too many rounds for one workflow history',
      { maxRounds: 1_001 },
      'maxRounds must be a positive integer up to 1000, got 1001',
    ],
    [
      'a budget given as a string',
      { completionBudgetSecPerGiB: '150' as unknown as number },
      'completionBudgetSecPerGiB must be a positive integer, got "150"',
    ],
    [
      'an unknown give-up action',
      { onGiveUp: 'retry' as unknown as 'abort' },
      'onGiveUp must be "abort" or "force-switchover", got "retry"',
    ],
    [
      'an unknown throttle policy',
      { throttle: 'gentle' as unknown as 'sdps' },
      'throttle must be one of sdps, history, auto-converge, none, got "gentle"',
    ],
    ['an empty store path', { storeDir: '' }, 'storeDir must be a non-empty path, got ""'],
    [
      'a relative store path',
      { store: 'shared' },
      'store must be an absolute path (the hosts resolve it, not the client), got "shared"',
    ],
    [
      'a store of another scheme',
      { store: 'gs://b/p' },
      'store: store "gs://b/p" uses gs://; only a directory path or s3://bucket/prefix is supported',
    ],
    [
      'a bad bucket name',
      { store: 's3://My_Bucket/p' },
      'store: store "s3://My_Bucket/p" names bucket "My_Bucket": a bucket name has 3-63 characters of a-z 0-9 . - and starts and ends with a letter or digit',
    ],
    ['both names of the store', { store: '/a', storeDir: '/b' }, 'give store or storeDir, not both'],
    ['oversized batches', { batchPages: 4096 }, 'batchPages must be a positive integer up to 1024, got 4096'],
    ['a zero credit window', { creditWindow: 0 }, 'creditWindow must be a positive integer up to 1024, got 0'],
  ])('rejects %s with a message naming the option and the value', (_what, options, message) => {
    expect(() => resolveMigrationOptions(options)).toThrow(
      expect.objectContaining({ name: 'InvalidMigrationOptionError', message }),
    );
  });

  it('rejects a keepSourceAfterSwitchover that is not a boolean instead of reading it as false', () => {
    // A JSON input of "true" (a string) must not silently let the source VM be destroyed.
    expect(() => resolveMigrationOptions({ keepSourceAfterSwitchover: 'true' as unknown as boolean })).toThrow(
      expect.objectContaining({
        name: 'InvalidMigrationOptionError',
        message: expect.stringContaining('keepSourceAfterSwitchover'),
      }),
    );
  });

  it('names a NaN downtime limit as NaN in its message', () => {
    expect(() => resolveMigrationOptions({ downtimeLimitMs: Number.NaN })).toThrow(
      expect.objectContaining({ name: 'InvalidMigrationOptionError', message: expect.stringContaining('got NaN') }),
    );
  });
});

describe('measuredThroughputBytesPerSec', () => {
  it('is zero before any round', () => {
    expect(measuredThroughputBytesPerSec([])).toBe(0);
  });

  it('averages over the latest rounds that together last at least 100 ms, ignoring older ones', () => {
    const rounds = [round(0, 1_000_000, 1_000, 0), round(1, 4_000, 60, 0), round(2, 6_000, 40, 0)];
    // 10,000 bytes in the last 100 ms; round 0's 1 MB/s is outside the window.
    expect(measuredThroughputBytesPerSec(rounds)).toBe(100_000);
  });

  it('uses the latest round alone when it lasts 100 ms or more', () => {
    expect(measuredThroughputBytesPerSec([round(0, 1_000, 50, 0), round(1, 50_000, 250, 0)])).toBe(200_000);
  });

  it('uses every round when all of them together are shorter than 100 ms', () => {
    expect(measuredThroughputBytesPerSec([round(0, 3_000, 10, 0), round(1, 1_000, 30, 0)])).toBe(100_000);
  });
});

describe('expectedDowntimeMs', () => {
  it('is pending bytes over throughput, in ms', () => {
    expect(expectedDowntimeMs(4_000_000, 20_000_000)).toBe(200);
  });

  it('is zero with nothing pending, even without a throughput measure', () => {
    expect(expectedDowntimeMs(0, 0)).toBe(0);
  });

  it('is infinite with pages pending and no throughput', () => {
    expect(expectedDowntimeMs(PAGE, 0)).toBe(Number.POSITIVE_INFINITY);
  });

  it("adds the stun's scan for the last dirty pages, which costs its time even with nothing pending", () => {
    expect(expectedDowntimeMs(4_000_000, 20_000_000, 65)).toBe(265);
    expect(expectedDowntimeMs(0, 0, 65)).toBe(65);
  });
});

describe('decideNextStep', () => {
  // 10,000 pages/s: the default 300 ms limit allows 3,000 pending pages.
  const throughput = 10_000 * PAGE;
  const roundOf = (n: number, pendingDirtyPages: number) => round(n, throughput / 5, 200, pendingDirtyPages);
  const decide = (rounds: RoundSample[], options: MigrationOptions = {}, elapsedMs = 1_000, memoryBytes = GIB) =>
    decideNextStep({ options: resolveMigrationOptions(options), rounds, pageSizeBytes: PAGE, memoryBytes, elapsedMs });

  it('asks for another round before any round has run', () => {
    expect(decide([])).toEqual({ type: 'next-round' });
  });

  it('switches over within the limit once a round no longer halves what is left', () => {
    expect(decide([roundOf(0, 4_000), roundOf(1, 2_100)])).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 210,
      forced: false,
    });
  });

  it('under an sdps throttle takes more rounds while they shrink the rest, until within half the limit', () => {
    const throttled = (rounds: RoundSample[], options: MigrationOptions = {}) =>
      decideNextStep({
        options: resolveMigrationOptions(options),
        rounds,
        pageSizeBytes: PAGE,
        memoryBytes: GIB,
        elapsedMs: 1_000,
        throttled: true,
      });
    // 210 ms is within 300 ms; the round shrank the rest by 30%, not by half: one more round.
    expect(throttled([roundOf(0, 3_000), roundOf(1, 2_100)])).toEqual({ type: 'next-round' });
    expect(decide([roundOf(0, 3_000), roundOf(1, 2_100)])).toMatchObject({ type: 'switchover' });
    // A round that did not shrink it (the guest ignores the throttle) ends pre-copy as before.
    expect(throttled([roundOf(0, 2_100), roundOf(1, 2_050)])).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 205,
      forced: false,
    });
    // Within half the limit the usual rule applies: 140 ms after 200 ms does not halve it.
    expect(throttled([roundOf(0, 2_000), roundOf(1, 1_400)])).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 140,
      forced: false,
    });
    // On the last allowed round, within the limit, it switches over.
    expect(throttled([roundOf(0, 3_000), roundOf(1, 2_100)], { maxRounds: 2 })).toMatchObject({ type: 'switchover' });
  });

  it('takes another round within the limit while the last round halved what is left', () => {
    expect(decide([roundOf(0, 100_000), roundOf(1, 2_000)])).toEqual({ type: 'next-round' });
  });

  it('switches over at once within the limit when switchoverEagerly is set, as QEMU does', () => {
    expect(decide([roundOf(0, 100_000), roundOf(1, 2_000)], { switchoverEagerly: true })).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 200,
      forced: false,
    });
  });

  it('switches over when the expected downtime falls under the floor', () => {
    expect(decide([roundOf(0, 100_000), roundOf(1, 50)])).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 5,
      forced: false,
    });
  });

  it('switches over when the expected downtime equals the limit exactly and the round did not halve the rest', () => {
    expect(decide([roundOf(0, 5_000), roundOf(1, 3_000)])).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 300,
      forced: false,
    });
  });

  it('runs another round while the expected downtime exceeds the limit and budget and rounds remain', () => {
    expect(decide([roundOf(0, 100_000), roundOf(1, 3_001)])).toEqual({ type: 'next-round' });
  });

  it('aborts past maxRounds with a reason naming the rounds, the estimate and the limit', () => {
    const rounds = [roundOf(0, 50_000), roundOf(1, 50_000), roundOf(2, 50_000)];
    expect(decide(rounds.slice(0, 2), { maxRounds: 3 })).toEqual({ type: 'next-round' });
    expect(decide(rounds, { maxRounds: 3 })).toEqual({
      type: 'abort',
      reason: 'did not converge in 3 rounds (expected downtime 5000 ms > limit 300 ms)',
    });
  });

  it('forces a switchover past maxRounds when onGiveUp is force-switchover', () => {
    const rounds = [roundOf(0, 50_000), roundOf(1, 50_000), roundOf(2, 50_000)];
    expect(decide(rounds, { maxRounds: 3, onGiveUp: 'force-switchover' })).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 5_000,
      forced: true,
    });
  });

  it('gives up once the elapsed time reaches the completion budget per GiB of memory', () => {
    const rounds = [roundOf(0, 50_000)];
    // 2 s per GiB of a 512 MiB guest: a budget of 1 s.
    const options = { completionBudgetSecPerGiB: 2 };
    expect(decide(rounds, options, 999, GIB / 2)).toEqual({ type: 'next-round' });
    expect(decide(rounds, options, 1_000, GIB / 2)).toEqual({
      type: 'abort',
      reason: 'did not converge within the completion budget of 1000 ms (expected downtime 5000 ms > limit 300 ms)',
    });
    expect(decide(rounds, { ...options, onGiveUp: 'force-switchover' }, 1_000, GIB / 2)).toMatchObject({
      type: 'switchover',
      forced: true,
    });
  });

  it("counts the stun's scan: pages that fit the limit alone do not switch over when the scan does not leave room", () => {
    // 2,100 pending pages are 210 ms at 10,000 pages/s: within 300 ms, but not with a 100 ms scan.
    const scanned = (n: number, pending: number, stunScanMs: number): RoundSample => ({
      ...roundOf(n, pending),
      stunScanMs,
    });
    expect(decide([roundOf(0, 4_000), roundOf(1, 2_100)])).toMatchObject({ type: 'switchover' });
    expect(decide([scanned(0, 4_000, 100), scanned(1, 2_100, 100)])).toEqual({ type: 'next-round' });
    expect(decide([scanned(0, 2_500, 100), scanned(1, 1_500, 100)])).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 250,
      forced: false,
    });
    expect(decide([scanned(0, 50_000, 100), scanned(1, 50_000, 100)], { maxRounds: 2 })).toEqual({
      type: 'abort',
      reason: "did not converge in 2 rounds (expected downtime 5100 ms, 100 of them the stun's scan > limit 300 ms)",
    });
  });

  it('gives up at once when the scan alone reached the limit two rounds in a row: no round or throttle shortens it', () => {
    const scanned = (n: number, stunScanMs: number): RoundSample => ({ ...roundOf(n, 10), stunScanMs });
    const limit = { downtimeLimitMs: 50 };
    // One slow scan on a loaded host is not enough.
    expect(decide([scanned(0, 60)], limit)).toEqual({ type: 'next-round' });
    expect(decide([scanned(0, 20), scanned(1, 60)], limit)).toEqual({ type: 'next-round' });
    expect(decide([scanned(0, 60), scanned(1, 50)], limit)).toEqual({
      type: 'abort',
      reason:
        "cannot meet the downtime limit: finding the last dirty pages at the stun alone takes 50 ms (2 rounds in a row) (expected downtime 51 ms, 50 of them the stun's scan > limit 50 ms)",
    });
    expect(decide([scanned(0, 60), scanned(1, 50)], { ...limit, onGiveUp: 'force-switchover' })).toEqual({
      type: 'switchover',
      expectedDowntimeMs: 51,
      forced: true,
    });
  });

  it('still switches over normally on the last allowed round when the estimate is within the limit', () => {
    const rounds = [roundOf(0, 50_000), roundOf(1, 10)];
    expect(decide(rounds, { maxRounds: 2 }, 10_000_000)).toMatchObject({ type: 'switchover', forced: false });
  });
});
