/**
 * Both hosts of a migration as an in-memory simulation of a guest with a hot set, for the
 * time-skipping tests of the throttle policies: the project's HostActivities, each a jest.fn, where
 * the guest REACTS to the throttle the workflow sends. A round that sends P pages lasts P / S
 * seconds; under throttle t the guest makes W·(1 − t/100) page writes per second, which dirty
 * H·(1 − e^(−writes/H)) distinct pages of its hot set of H pages: what the next round sends.
 */
import type { HostActivities } from '../../../activities/types';
import type { IncomingStatus, RoundStats, SwitchoverStats, ThrottleChange } from '../../../model/protocol';
import type { VmHistoryRecord } from '../../../store/vm-history';
import { deferred, fakeHosts, heartbeating, NOT_IN_A_MIGRATION, type Deferred, type FakeHosts } from './time-skipping';

/** Size of a guest page (bytes). */
export const PAGE_BYTES = 4096;
/** The store every simulated host names. */
export const SIM_STORE = '/shared/ferry';
const DIGEST = 'c0ffee'.repeat(10) + 'beef';

/** The simulated guest and link. */
export interface HotSetGuest {
  /** Pages of the guest's memory. */
  memoryPages: number;
  /** Pages the guest writes to, uniformly. */
  hotSetPages: number;
  /** Page writes per second while unthrottled. */
  writePagesPerSec: number;
  /** Pages per second the link sends. */
  sendPagesPerSec: number;
}

/** What a test may hook into, and the store shared by every migration of the simulation. */
export interface SimulationHooks {
  /** Runs when sendRound starts, before the round is computed (e.g. a gate holding the round). */
  beforeRound?: (round: number) => Promise<void>;
  /** Runs when the switchover starts. */
  beforeSwitchover?: () => Promise<void>;
  /** The store's VM history records, by VM: prepareSource reads them, recordVmHistory writes them. */
  history?: Map<string, VmHistoryRecord>;
}

/** Where one migration's guest stands between rounds. */
interface MigrationState {
  pendingPages: number;
  /** Throttle the guest runs under now (percent). */
  percent: number;
  /** Throttle the last round ended with (percent). */
  lastEndPercent: number;
  /** The round running or last run. */
  round: number;
  /** Simulated time since the migration's first round started (ms). */
  elapsedMs: number;
  /** Changes by request since the last round ended. */
  requested: ThrottleChange[];
  /** What the destination's receivePages returns, once the switchover or an abort settles it. */
  received: Deferred<IncomingStatus>;
}

/** Distinct pages of the hot set dirtied by `writes` uniform page writes. */
function distinctPagesDirtied(guest: HotSetGuest, writes: number): number {
  return Math.round(guest.hotSetPages * (1 - Math.exp(-writes / guest.hotSetPages)));
}

/** The figures of round `round` that sends `state.pendingPages` under the throttle `state.percent`. */
function runRound(guest: HotSetGuest, state: MigrationState, round: number, startPercent: number): RoundStats {
  const sent = state.pendingPages;
  const durationMs = (sent / guest.sendPagesPerSec) * 1000;
  const t = state.percent;
  const writeRate = guest.writePagesPerSec * (1 - t / 100);
  const pending = distinctPagesDirtied(guest, (writeRate * durationMs) / 1000);
  const runMs = durationMs * (1 - t / 100);
  const throttledMs = durationMs - runMs;
  const changes: ThrottleChange[] = [
    ...(startPercent !== state.lastEndPercent
      ? [{ atMs: state.elapsedMs, round, percent: startPercent, why: 'round' as const }]
      : []),
    ...state.requested,
  ];
  state.requested = [];
  state.lastEndPercent = t;
  state.elapsedMs += durationMs;
  state.pendingPages = pending;
  return {
    round,
    dirtyPagesAtStart: sent,
    pagesSent: sent,
    zeroPages: 0,
    bytesSent: sent * PAGE_BYTES,
    durationMs,
    throughputBytesPerSec: guest.sendPagesPerSec * PAGE_BYTES,
    pendingDirtyPages: pending,
    dirtyRateBytesPerSec: (pending * PAGE_BYTES * 1000) / durationMs,
    storeLagBytes: 0,
    lane: 'network',
    vcpu: {
      state: 'running',
      throttlePercent: t,
      workUnits: Math.round(runMs),
      pagesWritten: Math.round((writeRate * durationMs) / 1000),
      runMs,
      throttledMs,
    },
    throttle: {
      startPercent,
      endPercent: t,
      runMs,
      throttledMs,
      guestWriteRateBytesPerSec: writeRate * PAGE_BYTES,
      changes,
    },
  };
}

/** Sends the pages still pending and resumes the guest on the destination, whose receiver returns. */
function switchOver(guest: HotSetGuest, migrationId: string, state: MigrationState): SwitchoverStats {
  const finalPages = state.pendingPages;
  const downtimeMs = (finalPages / guest.sendPagesPerSec) * 1000;
  const stunAt = Date.now() - downtimeMs;
  const destination: SwitchoverStats['destination'] = {
    ok: true,
    stunAt,
    contentDigest: 'c',
    resumedAt: Date.now(),
    digest: DIGEST,
    pagesFromStore: 0,
    gapBatches: 0,
    tornPagesRepaired: 0,
    verifyMs: 0,
  };
  const bytesReceived = finalPages * PAGE_BYTES;
  const status = { appliedSeq: 1, batches: 1, bytesReceived, pagesApplied: finalPages, gapBatches: 0 };
  state.received.resolve({ migrationId, state: 'resumed', ...status, final: destination });
  return {
    finalPages,
    finalBytes: bytesReceived,
    downtimeMs,
    finalSendMs: downtimeMs,
    storeDurableMs: 0,
    storeLagBytes: 0,
    stunAt,
    handoverLane: 'network',
    destination,
    sourceDigest: DIGEST,
  };
}

/**
 * Hosts `h1` and `h2` serving migrations of `guest`, either way round: each migration's guest starts
 * with every page pending, a round runs under the throttle its input names (or the one a
 * setSourceThrottle set since, as a request), and the switchover completes at once.
 */
export function simulateHosts(guest: HotSetGuest, hooks: SimulationHooks = {}): FakeHosts {
  const migrations = new Map<string, MigrationState>();
  const stateOf = (migrationId: string): MigrationState => {
    let state = migrations.get(migrationId);
    if (!state) {
      state = {
        pendingPages: guest.memoryPages,
        percent: 0,
        lastEndPercent: 0,
        round: 0,
        elapsedMs: 0,
        requested: [],
        received: deferred<IncomingStatus>(),
      };
      migrations.set(migrationId, state);
    }
    return state;
  };

  const behaviour: Omit<HostActivities, 'ping'> = {
    prepareSource: async ({ vmId, readHistory }) => ({
      pageCount: guest.memoryPages,
      memoryBytes: guest.memoryPages * PAGE_BYTES,
      store: SIM_STORE,
      baseEpoch: 4,
      keyNonce: 'n',
      workload: { type: 'idle' },
      ...(readHistory ? { history: hooks.history?.get(vmId) ?? null } : {}),
    }),
    prepareDestination: async () => ({ activityAttempt: 1 }),
    receivePages: async ({ migrationId }) => heartbeating(() => stateOf(migrationId).received.promise),
    sendRound: async ({ migrationId, round, throttle }) =>
      heartbeating(async () => {
        const state = stateOf(migrationId);
        const startPercent = throttle?.percent ?? state.percent;
        state.percent = startPercent;
        state.round = round;
        await hooks.beforeRound?.(round);
        return runRound(guest, state, round, startPercent);
      }),
    setSourceThrottle: async ({ migrationId, percent }) => {
      const state = stateOf(migrationId);
      state.percent = percent;
      state.requested.push({ atMs: state.elapsedMs, round: state.round, percent, why: 'request' });
      return { percent };
    },
    recordVmHistory: async ({ record }) => {
      hooks.history?.set(record.vmId, record);
    },
    switchover: async ({ migrationId }) => {
      await hooks.beforeSwitchover?.();
      return switchOver(guest, migrationId, stateOf(migrationId));
    },
    rollbackSource: async () => ({ running: true }),
    abortDestination: async ({ migrationId }) => {
      const aborted = { appliedSeq: 0, batches: 0, bytesReceived: 0, pagesApplied: 0, gapBatches: 0 };
      stateOf(migrationId).received.resolve({ migrationId, state: 'aborted', ...aborted });
      return { resumed: false };
    },
    settleDestination: async () => ({ resumed: false }),
    releaseSource: async () => undefined,
    removeMigrationFiles: async () => undefined,
    finishDestination: async () => undefined,
    ...NOT_IN_A_MIGRATION,
  };
  return fakeHosts(behaviour);
}
