import { destinationIncidents, roundIncidents } from '../../workflows/incidents';
import type { IncomingStatus, RoundStats } from '../../model/protocol';

function round(n: number, lane: RoundStats['lane'], extra: Partial<RoundStats> = {}): RoundStats {
  return {
    round: n,
    dirtyPagesAtStart: 10,
    pagesSent: 10,
    zeroPages: 0,
    bytesSent: 40_960,
    durationMs: 5,
    throughputBytesPerSec: 1e6,
    pendingDirtyPages: 1,
    dirtyRateBytesPerSec: 1,
    storeLagBytes: 0,
    lane,
    vcpu: { state: 'running', throttlePercent: 0, workUnits: 0, pagesWritten: 0, runMs: 0, throttledMs: 0 },
    ...extra,
  };
}

describe('round incidents', () => {
  it("report the store's outages from the newest round, or from the switchover's list when given", () => {
    const from = Date.UTC(2026, 10, 26, 5, 0, 0);
    const open = { from, reason: 'connect ECONNREFUSED 127.0.0.1:8333', failedUploads: 3 };
    const rounds = [round(0, 'network', { storeOutages: [open] }), round(1, 'network')];
    expect(roundIncidents(rounds)).toEqual([
      {
        at: 'store, since 2026-11-26T05:00:00.000Z',
        what: 'the store is unreachable: connect ECONNREFUSED 127.0.0.1:8333 (3 uploads failed)',
        recovery: 'the network lane goes on; uploads are retried and the store catches up from guest memory',
      },
    ]);
    const ended = roundIncidents(rounds, [{ ...open, to: from + 3_250, failedUploads: 1 }]);
    expect(ended.map((i) => i.what)).toEqual([
      'the store was unreachable for 3.3 s: connect ECONNREFUSED 127.0.0.1:8333 (1 upload failed)',
    ]);
  });

  it('are empty for an undisturbed pre-copy', () => {
    expect(roundIncidents([round(0, 'network'), round(1, 'network')])).toEqual([]);
  });

  it('name the round where the network lane was lost and the one where it came back', () => {
    const incidents = roundIncidents([round(0, 'network'), round(1, 'store'), round(2, 'store'), round(3, 'network')]);
    expect(incidents.map((i) => [i.at, i.what])).toEqual([
      ['round 1', 'the page stream stopped answering (network lane lost)'],
      ['round 3', 'the page stream answered again'],
    ]);
  });

  it('report a retried round activity with the checkpoint it continued from', () => {
    const [incident] = roundIncidents([round(0, 'network', { activityAttempt: 2, resumedFromPagesSent: 4096 })]);
    expect(incident?.what).toContain('attempt 2');
    expect(incident?.recovery).toContain('checkpoint at 4096 pages');
  });
});

describe('destination incidents', () => {
  const status = (final: Partial<NonNullable<IncomingStatus['final']>>, attempt = 1): IncomingStatus => ({
    migrationId: 'm',
    state: 'resumed',
    appliedSeq: 9,
    batches: 9,
    bytesReceived: 1,
    pagesApplied: 1,
    gapBatches: 0,
    activityAttempt: attempt,
    final: {
      ok: true,
      stunAt: 0,
      resumedAt: 1,
      digest: 'd',
      contentDigest: 'c',
      pagesFromStore: 0,
      gapBatches: 0,
      tornPagesRepaired: 0,
      verifyMs: 1,
      ...final,
    },
  });

  it('report lost batches with the pages read from the file, torn pages, a store handover and retries', () => {
    const incidents = destinationIncidents({
      status: status({ gapBatches: 3, pagesFromStore: 700, pagesPrefetched: 9_000, tornPagesRepaired: 2 }, 2),
      handoverLane: 'store',
    });
    expect(incidents.map((i) => i.at)).toEqual(['receiver', 'stream', 'stream', 'switchover']);
    expect(incidents[1]?.what).toBe('3 page batches never arrived over NATS');
    expect(incidents[1]?.recovery).toContain('9000 pages while the stream was down, 700 at switchover');
  });

  it('are empty when nothing was lost', () => {
    expect(destinationIncidents({ status: status({}), handoverLane: 'network' })).toEqual([]);
  });
});
