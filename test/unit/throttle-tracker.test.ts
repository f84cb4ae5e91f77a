/**
 * The workflow's throttle bookkeeping (workflows/throttle-tracker.ts), the validation of throttle
 * and downtime-limit updates, and the VM history record on both store adapters.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { RoundStats, RoundThrottleStats } from '../../model/protocol';
import { DirectoryObjectStore } from '../../store/object/directory-object-store';
import { DirectoryPageStore } from '../../store/directory/directory-page-store';
import { ObjectPageStore } from '../../store/object/object-page-store';
import { historyKey, parseVmHistory, type VmHistoryRecord } from '../../store/vm-history';
import { validateDowntimeLimit, validateThrottleRequest } from '../../workflows/policy';
import {
  historyRecord,
  measuredThrottlePercent,
  throttleSample,
  ThrottleTracker,
} from '../../workflows/throttle-tracker';

const MB = 1e6;

function round(
  n: number,
  figures: { send: number; dirty: number; throttle?: Partial<RoundThrottleStats> },
): RoundStats {
  return {
    round: n,
    dirtyPagesAtStart: 0,
    pagesSent: 0,
    zeroPages: 0,
    bytesSent: figures.send,
    durationMs: 1000,
    throughputBytesPerSec: figures.send,
    pendingDirtyPages: figures.dirty / 4096,
    dirtyRateBytesPerSec: figures.dirty,
    storeLagBytes: 0,
    lane: 'network',
    vcpu: { state: 'running', throttlePercent: 0, workUnits: 0, pagesWritten: 0, runMs: 0, throttledMs: 0 },
    throttle: {
      startPercent: 0,
      endPercent: 0,
      runMs: 1000,
      throttledMs: 0,
      guestWriteRateBytesPerSec: 0,
      changes: [],
      ...figures.throttle,
    },
  };
}

function record(vmId: string, throttlePercent: number): VmHistoryRecord {
  return {
    vmId,
    migrationId: 'migrate-vm1-run',
    at: '2026-11-26T07:00:00.000Z',
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: 'sdps',
    throttlePercent,
    maxThrottlePercent: throttlePercent,
    rounds: 5,
    sendRateBytesPerSec: 200 * MB,
    dirtyRateBytesPerSec: 80 * MB,
  };
}

describe('ThrottleTracker', () => {
  it('leaves a guest alone while it dirties slower than pages leave, and engages once it does not', () => {
    const tracker = new ThrottleTracker('sdps');
    expect(tracker.roundInput()).toEqual({ policy: 'sdps', percent: 0, adjustWithinRound: true });
    tracker.afterRound([round(0, { send: 200 * MB, dirty: 50 * MB })]);
    expect(tracker.percent).toBe(0);
    tracker.afterRound([round(1, { send: 200 * MB, dirty: 190 * MB })]);
    // Aim: 40% of 200 MB/s out of 190 MB/s unthrottled → 57.9%, of which 80% is taken at once.
    expect(tracker.percent).toBeCloseTo(46.3, 1);
  });

  it("goes on from the throttle the source ended the round with, and measures the round's throttle", () => {
    const tracker = new ThrottleTracker('sdps');
    const stats = round(1, {
      send: 200 * MB,
      dirty: 100 * MB,
      throttle: { startPercent: 20, endPercent: 60, runMs: 600, throttledMs: 400 },
    });
    expect(measuredThrottlePercent(stats)).toBe(40);
    tracker.afterRound([stats]);
    // Unthrottled 100 / 0.6 = 166.7 MB/s; aim 80 MB/s → 52%; from 60 toward 52 by 80%.
    expect(tracker.percent).toBeCloseTo(53.6, 1);
  });

  it('takes the send rate over the latest second of rounds, so one slow short round does not engage it', () => {
    const short = (n: number, send: number, dirty: number): RoundStats => ({
      ...round(n, { send, dirty }),
      durationMs: 500,
      bytesSent: send / 2,
    });
    const rounds = [short(1, 250 * MB, 100 * MB), short(2, 125 * MB, 100 * MB)];
    expect(throttleSample(rounds).sendRateBytesPerSec).toBeCloseTo(187.5 * MB, 0);
    const tracker = new ThrottleTracker('sdps');
    tracker.afterRound(rounds);
    expect(tracker.percent).toBe(0);
    // Taken alone, the slow round would have engaged it; a second of such rounds does.
    expect(throttleSample([rounds[1] as RoundStats]).sendRateBytesPerSec).toBeCloseTo(125 * MB, 0);
    tracker.afterRound([short(3, 100 * MB, 100 * MB), short(4, 100 * MB, 100 * MB)]);
    expect(tracker.percent).toBeGreaterThan(0);
    expect(tracker.engaged).toBe(true);
  });

  it('holds a pinned throttle until it is handed back, then goes on from there', () => {
    const tracker = new ThrottleTracker('sdps');
    tracker.pin(35);
    expect(tracker.roundInput()).toEqual({ policy: 'sdps', percent: 35, adjustWithinRound: false });
    tracker.afterRound([round(1, { send: 200 * MB, dirty: 10 * MB, throttle: { startPercent: 35, endPercent: 35 } })]);
    expect(tracker.percent).toBe(35);
    tracker.pin(null);
    expect(tracker.roundInput().adjustWithinRound).toBe(true);
    expect(tracker.percent).toBe(35);
  });

  it('starts history from the record after round 0, and says when there was none', () => {
    const learned = new ThrottleTracker('history', record('vm1', 55));
    // Round 0 runs unthrottled; the round after it starts from the record, or higher if sdps says so.
    expect(learned.roundInput()).toEqual({ policy: 'history', percent: 0, adjustWithinRound: true });
    learned.afterRound([round(0, { send: 200 * MB, dirty: 30 * MB })]);
    expect(learned.roundInput()).toEqual({ policy: 'history', percent: 55, adjustWithinRound: true });
    const pressed = new ThrottleTracker('history', record('vm1', 10));
    pressed.afterRound([round(0, { send: 200 * MB, dirty: 190 * MB })]);
    expect(pressed.percent).toBeCloseTo(46.3, 1);
    // After round 0 the record no longer holds it up: sdps lowers it if the guest allows.
    learned.afterRound([round(1, { send: 200 * MB, dirty: 20 * MB, throttle: { startPercent: 55, endPercent: 55 } })]);
    expect(learned.percent).toBeLessThan(55);
    expect(learned.summary([]).history).toEqual({
      migrationId: 'migrate-vm1-run',
      at: '2026-11-26T07:00:00.000Z',
      throttlePercent: 55,
      rounds: 5,
    });
    const fresh = new ThrottleTracker('history', null);
    expect(fresh.percent).toBe(0);
    expect(fresh.summary([]).history).toBeNull();
    // Other policies never start from a record.
    expect(new ThrottleTracker('sdps', record('vm1', 55)).percent).toBe(0);
  });

  it('keeps auto-converge from adjusting inside rounds', () => {
    expect(new ThrottleTracker('auto-converge').roundInput().adjustWithinRound).toBe(false);
    expect(new ThrottleTracker('none').roundInput().adjustWithinRound).toBe(false);
  });

  it('sums up the slowdown measured on the vCPU and every change, for the result and the history', () => {
    const tracker = new ThrottleTracker('sdps');
    const rounds = [
      round(0, { send: 200 * MB, dirty: 40 * MB, throttle: { runMs: 4000 } }),
      round(1, {
        send: 200 * MB,
        dirty: 180 * MB,
        throttle: {
          startPercent: 0,
          endPercent: 50,
          runMs: 700,
          throttledMs: 300,
          changes: [{ atMs: 4300, round: 1, percent: 50, why: 'sample' }],
        },
      }),
      round(2, {
        send: 200 * MB,
        dirty: 60 * MB,
        throttle: {
          startPercent: 45,
          endPercent: 45,
          runMs: 550,
          throttledMs: 450,
          changes: [{ atMs: 5000, round: 2, percent: 45, why: 'request' }],
        },
      }),
    ];
    const summary = tracker.summary(rounds);
    expect(summary).toMatchObject({
      policy: 'sdps',
      startPercent: 0,
      throttledMs: 750,
      guestRunMs: 5250,
      maxPercent: 50,
      finalPercent: 45,
      requests: 1,
    });
    expect(summary.workLostShare).toBeCloseTo(750 / 6000, 6);
    expect(summary.timeline.map((c) => c.why)).toEqual(['sample', 'request']);
    const written = historyRecord({
      vmId: 'vm1',
      migrationId: 'm',
      at: 'now',
      sourceHost: 'h1',
      destinationHost: 'h2',
      summary,
      rounds,
    });
    expect(written).toMatchObject({ throttlePercent: 45, maxThrottlePercent: 50, rounds: 3, policy: 'sdps' });
  });
});

describe('updates of a running migration', () => {
  it('take a throttle from 0 to 99 (tenths kept) or null, and refuse anything else naming it', () => {
    expect(validateThrottleRequest(0)).toBe(0);
    expect(validateThrottleRequest(42.46)).toBe(42.5);
    expect(validateThrottleRequest(99)).toBe(99);
    expect(validateThrottleRequest(null)).toBeNull();
    for (const bad of [100, -1, Number.NaN, '40', undefined]) {
      expect(() => validateThrottleRequest(bad)).toThrow(
        expect.objectContaining({ name: 'InvalidMigrationOptionError', message: expect.stringContaining('got') }),
      );
    }
    expect(() => validateThrottleRequest(150)).toThrow('throttle percent must be a number from 0 to 99');
  });

  it('take a downtime limit that is a positive integer of ms', () => {
    expect(validateDowntimeLimit(500)).toBe(500);
    expect(() => validateDowntimeLimit(0)).toThrow('downtimeLimitMs must be a positive integer, got 0');
    expect(() => validateDowntimeLimit(12.5)).toThrow('got 12.5');
    expect(() => validateDowntimeLimit(undefined)).toThrow('downtimeLimitMs must be a positive integer');
  });
});

describe('VM history on the store', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-history-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['a directory store', (d: string) => new DirectoryPageStore(d)],
    [
      'an object store',
      (d: string) => new ObjectPageStore(new DirectoryObjectStore(d), `s3://test/${path.basename(d)}`),
    ],
  ])('is kept per VM on %s, replaced by the next record, and absent before the first', async (_what, open) => {
    const store = open(dir);
    expect(await store.readVmHistory('vm1')).toBeUndefined();
    await store.writeVmHistory(record('vm1', 30));
    await store.writeVmHistory(record('vm1', 55));
    await store.writeVmHistory(record('vm2', 10));
    // Another process opening the same store finds them.
    const again = open(dir);
    expect(await again.readVmHistory('vm1')).toEqual(record('vm1', 55));
    expect((await again.readVmHistory('vm2'))?.throttlePercent).toBe(10);
  });

  it('ignores a record that is not one (another VM, a broken file, a throttle out of range)', () => {
    const text = (r: unknown) => JSON.stringify(r);
    expect(parseVmHistory(text(record('vm1', 20)), 'vm1')?.throttlePercent).toBe(20);
    expect(parseVmHistory(text(record('vm2', 20)), 'vm1')).toBeUndefined();
    expect(parseVmHistory('{"vmId":', 'vm1')).toBeUndefined();
    expect(parseVmHistory(text({ ...record('vm1', 20), throttlePercent: 140 }), 'vm1')).toBeUndefined();
    expect(parseVmHistory(text({ vmId: 'vm1' }), 'vm1')).toBeUndefined();
    expect(historyKey('vm1')).toBe('history/vm1.json');
  });
});
