/**
 * Migration policy as pure functions: option validation, the downtime estimate and the decision
 * after each pre-copy round. No I/O and no clocks, so unit tests call them directly and the
 * workflow replays them deterministically.
 */
import { parseStoreRef, type StoreRef } from '../store/store-ref';
import { MAX_THROTTLE_PERCENT, THROTTLE_POLICIES, type ThrottlePolicy } from './throttle-policy';

/** Downtime the guest may see at switchover (QEMU's default). */
export const DEFAULT_DOWNTIME_LIMIT_MS = 300;
/** Rounds after which the give-up action applies. */
export const DEFAULT_MAX_ROUNDS = 30;
/**
 * Largest maxRounds accepted. Each round adds about ten events to the workflow's history; 1,000
 * rounds stay under Temporal's 10,240-event warning, where 10,000 would pass its 51,200-event
 * limit, at which the server terminates the workflow mid-migration.
 */
export const MAX_ROUNDS_LIMIT = 1_000;
/** Completion budget per GiB of guest memory (KubeVirt's default), in seconds. */
export const DEFAULT_COMPLETION_BUDGET_SEC_PER_GIB = 150;
/** What happens past the budget or round limit. */
export const DEFAULT_ON_GIVE_UP: GiveUpAction = 'abort';
/** Pages per batch on the stream (1 MiB of page data; measured a little faster than 512 KiB here). */
export const DEFAULT_BATCH_PAGES = 256;
/** Batches the receiver lets the sender run ahead (16 MiB at the default batch size). */
export const DEFAULT_CREDIT_WINDOW = 16;
/** How long the source waits for the destination to confirm the resume before rolling back. */
export const DEFAULT_RESUME_TIMEOUT_MS = 15_000;
/** Throughput is averaged over at least this much of the latest rounds. */
export const THROUGHPUT_WINDOW_MS = 100;
/**
 * Within the downtime limit, another round is taken while each round at least halves what is left
 * to send (so the pause shrinks for little extra time), until the estimate is under the floor.
 */
export const SHRINK_FACTOR_TO_CONTINUE = 0.5;
/** Expected downtime below which the switchover happens at once (ms). */
export const DOWNTIME_FLOOR_MS = 10;
/**
 * Share of the downtime limit under which an sdps-throttled migration stops taking more rounds
 * just because they shrink the rest (it still stops at once when a round no longer does). The
 * estimate leaves out what the guest dirties between the round's end and the stun (a workflow
 * decision and an activity start, 50-100 ms here) and the stun's fixed costs; without a throttle
 * further rounds need not shrink the rest, with one they do, for little more of the guest's time.
 * The first benchmark, switching at the full limit, saw 296-378 ms of downtime under a 300 ms limit.
 */
export const THROTTLED_DOWNTIME_SHARE = 0.5;
/** Above that reserve, a throttled round that left at most this share of the round before's pages earns another. */
export const THROTTLED_SHRINK_FACTOR_TO_CONTINUE = 0.9;

/** Past the budget or round limit: stun and switch over anyway, or roll back. */
export type GiveUpAction = 'force-switchover' | 'abort';

/** Per-migration policy; every field is optional. */
export interface MigrationOptions {
  /** Largest expected downtime at which to switch over (ms); default 300. */
  downtimeLimitMs?: number;
  /** Pre-copy rounds before giving up; default 30. */
  maxRounds?: number;
  /** Seconds per GiB of guest memory before giving up; default 150. */
  completionBudgetSecPerGiB?: number;
  /** Default 'abort'. */
  onGiveUp?: GiveUpAction;
  /**
   * How the guest's vCPU is slowed when it dirties memory faster than pages leave: `sdps`
   * (default), `history` (sdps from the throttle of the VM's last converged migration),
   * `auto-converge` (QEMU's law) or `none`.
   */
  throttle?: ThrottlePolicy;
  /**
   * Shared store seen by both hosts: an absolute directory path or `s3://bucket/prefix`; default
   * the hosts' configured store. The S3 endpoint and credentials come from each host's FERRY_S3_*.
   */
  store?: string;
  /** Older name of `store`, for a directory only. */
  storeDir?: string;
  /** Pages per stream batch; default 256 (1 MiB). */
  batchPages?: number;
  /**
   * Batches in flight the receiver allows; default 16 (16 MiB). Keep window × batch size below the
   * nats-server's max_pending (64 MiB in ferry's config), or the server drops batches as a slow
   * consumer whenever the receiver falls behind (they are then taken from the page file, slowly).
   */
  creditWindow?: number;
  /**
   * Switch over as soon as the estimate is within the limit, as QEMU does, instead of taking more
   * rounds while they keep halving what is left; default false.
   */
  switchoverEagerly?: boolean;
  /** Keep the source VM stunned (never running) after the switchover instead of destroying it, so
   * its memory can be compared with the destination's; default false. */
  keepSourceAfterSwitchover?: boolean;
  /** Keep the migration's page file and manifests after it completes (for inspection, or to check
   * the destination against what the source wrote when the source is gone); default false. */
  keepPageFile?: boolean;
}

/** Validated options with defaults filled in. */
export interface ResolvedMigrationOptions {
  downtimeLimitMs: number;
  maxRounds: number;
  completionBudgetSecPerGiB: number;
  onGiveUp: GiveUpAction;
  throttle: ThrottlePolicy;
  /** The store named by `store` or `storeDir`, if any. */
  store: string | undefined;
  batchPages: number;
  creditWindow: number;
  keepSourceAfterSwitchover: boolean;
  keepPageFile: boolean;
  switchoverEagerly: boolean;
}

/** Thrown for an invalid option; the message names the option and the bad value. */
export class InvalidMigrationOptionError extends Error {
  override readonly name = 'InvalidMigrationOptionError';
}

function positiveInteger(name: string, value: unknown, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > max) {
    const shown = typeof value === 'number' ? String(value) : JSON.stringify(value);
    throw new InvalidMigrationOptionError(
      `${name} must be a positive integer${max < Number.MAX_SAFE_INTEGER ? ` up to ${max}` : ''}, got ${shown}`,
    );
  }
  return value;
}

/** Throws unless `store` is an absolute directory path or a well-formed `s3://bucket/prefix`. */
function validateStore(store: unknown, name: string): void {
  if (typeof store !== 'string')
    throw new InvalidMigrationOptionError(`${name} must be a string, got ${JSON.stringify(store)}`);
  let ref: StoreRef;
  try {
    ref = parseStoreRef(store);
  } catch (err) {
    throw new InvalidMigrationOptionError(`${name}: ${(err as Error).message}`);
  }
  if (ref.kind === 'directory' && !ref.dir.startsWith('/'))
    throw new InvalidMigrationOptionError(
      `${name} must be an absolute path (the hosts resolve it, not the client), got ${JSON.stringify(store)}`,
    );
  if (ref.kind === 's3' && name === 'storeDir')
    throw new InvalidMigrationOptionError(`storeDir is a directory; give ${JSON.stringify(store)} as store`);
}

/** Validates `raw` and fills in defaults; returns a new object; throws InvalidMigrationOptionError. */
export function resolveMigrationOptions(raw: MigrationOptions | undefined): ResolvedMigrationOptions {
  const o = raw ?? {};
  if (typeof o !== 'object')
    throw new InvalidMigrationOptionError(`policy must be an object, got ${JSON.stringify(o)}`);
  if (typeof o.maxRounds === 'number' && o.maxRounds > MAX_ROUNDS_LIMIT)
    throw new InvalidMigrationOptionError(
      `maxRounds must be at most ${MAX_ROUNDS_LIMIT} (each round adds to the workflow's history, which Temporal caps), got ${o.maxRounds}`,
    );
  const onGiveUp = o.onGiveUp ?? DEFAULT_ON_GIVE_UP;
  if (onGiveUp !== 'abort' && onGiveUp !== 'force-switchover') {
    throw new InvalidMigrationOptionError(
      `onGiveUp must be "abort" or "force-switchover", got ${JSON.stringify(onGiveUp)}`,
    );
  }
  for (const key of ['keepSourceAfterSwitchover', 'keepPageFile', 'switchoverEagerly'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'boolean') {
      throw new InvalidMigrationOptionError(`${key} must be true or false, got ${JSON.stringify(o[key])}`);
    }
  }
  const throttle = o.throttle ?? 'sdps';
  if (!THROTTLE_POLICIES.includes(throttle)) {
    throw new InvalidMigrationOptionError(
      `throttle must be one of ${THROTTLE_POLICIES.join(', ')}, got ${JSON.stringify(throttle)}`,
    );
  }
  if (o.storeDir !== undefined && (typeof o.storeDir !== 'string' || o.storeDir === '')) {
    throw new InvalidMigrationOptionError(`storeDir must be a non-empty path, got ${JSON.stringify(o.storeDir)}`);
  }
  if (o.store !== undefined && o.storeDir !== undefined)
    throw new InvalidMigrationOptionError('give store or storeDir, not both');
  const store = o.store ?? o.storeDir;
  if (store !== undefined) validateStore(store, o.store !== undefined ? 'store' : 'storeDir');
  return {
    downtimeLimitMs: positiveInteger('downtimeLimitMs', o.downtimeLimitMs, DEFAULT_DOWNTIME_LIMIT_MS),
    maxRounds: positiveInteger('maxRounds', o.maxRounds, DEFAULT_MAX_ROUNDS, MAX_ROUNDS_LIMIT),
    completionBudgetSecPerGiB: positiveInteger(
      'completionBudgetSecPerGiB',
      o.completionBudgetSecPerGiB,
      DEFAULT_COMPLETION_BUDGET_SEC_PER_GIB,
    ),
    onGiveUp,
    throttle,
    store,
    batchPages: positiveInteger('batchPages', o.batchPages, DEFAULT_BATCH_PAGES, 1024),
    creditWindow: positiveInteger('creditWindow', o.creditWindow, DEFAULT_CREDIT_WINDOW, 1024),
    keepSourceAfterSwitchover: o.keepSourceAfterSwitchover === true,
    keepPageFile: o.keepPageFile === true,
    switchoverEagerly: o.switchoverEagerly === true,
  };
}

/** Validates a downtime limit given while a migration runs; returns it. */
export function validateDowntimeLimit(value: unknown): number {
  if (value === undefined || value === null)
    throw new InvalidMigrationOptionError(`downtimeLimitMs must be a positive integer, got ${String(value)}`);
  return positiveInteger('downtimeLimitMs', value, 0);
}

/**
 * Validates a throttle asked for while a migration runs: a percent of the vCPU's time in
 * 0..MAX_THROTTLE_PERCENT, or null to hand the throttle back to the policy.
 */
export function validateThrottleRequest(value: unknown): number | null {
  if (value === null) return null;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_THROTTLE_PERCENT) {
    throw new InvalidMigrationOptionError(
      `throttle percent must be a number from 0 to ${MAX_THROTTLE_PERCENT}, or null for the policy's, got ${JSON.stringify(value)}`,
    );
  }
  return Math.round(value * 10) / 10;
}

/** The figures of a finished round that the policy looks at. */
export interface RoundSample {
  round: number;
  bytesSent: number;
  durationMs: number;
  pendingDirtyPages: number;
}

/** Throughput over the latest rounds that together last at least `windowMs` (bytes/s). */
export function measuredThroughputBytesPerSec(
  rounds: readonly RoundSample[],
  windowMs: number = THROUGHPUT_WINDOW_MS,
): number {
  let bytes = 0;
  let ms = 0;
  for (let i = rounds.length - 1; i >= 0 && ms < windowMs; i -= 1) {
    const r = rounds[i] as RoundSample;
    bytes += r.bytesSent;
    ms += r.durationMs;
  }
  return ms > 0 ? (bytes * 1000) / ms : 0;
}

/** Expected downtime if the switchover happened now: pending dirty bytes ÷ throughput (ms). */
export function expectedDowntimeMs(pendingBytes: number, throughputBytesPerSec: number): number {
  if (pendingBytes === 0) return 0;
  if (throughputBytesPerSec <= 0) return Number.POSITIVE_INFINITY;
  return (pendingBytes * 1000) / throughputBytesPerSec;
}

/** What the workflow does after a round. */
export type NextStep =
  | { type: 'switchover'; expectedDowntimeMs: number; forced: boolean }
  | { type: 'next-round' }
  | { type: 'abort'; reason: string };

/**
 * Decides after a round: within the limit, switch over (after more rounds while they keep halving
 * what is left, unless `switchoverEagerly`); above it, go on until the round limit or the budget
 * is spent, then give up as the options say.
 */
export function decideNextStep(args: {
  options: ResolvedMigrationOptions;
  rounds: readonly RoundSample[];
  pageSizeBytes: number;
  memoryBytes: number;
  elapsedMs: number;
  /** An sdps throttle is engaged: see THROTTLED_DOWNTIME_SHARE. */
  throttled?: boolean;
}): NextStep {
  const last = args.rounds[args.rounds.length - 1];
  if (!last) return { type: 'next-round' };
  const throughput = measuredThroughputBytesPerSec(args.rounds);
  const estimate = expectedDowntimeMs(last.pendingDirtyPages * args.pageSizeBytes, throughput);
  const budgetMs = (args.options.completionBudgetSecPerGiB * 1000 * args.memoryBytes) / 2 ** 30;
  const outOfRounds = args.rounds.length >= args.options.maxRounds;
  const outOfTime = args.elapsedMs >= budgetMs;
  if (estimate <= args.options.downtimeLimitMs) {
    const before =
      args.rounds.length >= 2
        ? (args.rounds[args.rounds.length - 2] as RoundSample).pendingDirtyPages
        : args.memoryBytes / args.pageSizeBytes;
    // Under an sdps throttle the rest keeps shrinking: above the reserve, any real shrinking is
    // worth another round; one that stalls is not, throttled or not.
    const reserved = args.throttled === true && estimate > args.options.downtimeLimitMs * THROTTLED_DOWNTIME_SHARE;
    const continueFactor = reserved ? THROTTLED_SHRINK_FACTOR_TO_CONTINUE : SHRINK_FACTOR_TO_CONTINUE;
    const stillShrinking = last.pendingDirtyPages <= before * continueFactor;
    const done =
      args.options.switchoverEagerly || estimate <= DOWNTIME_FLOOR_MS || !stillShrinking || outOfRounds || outOfTime;
    return done ? { type: 'switchover', expectedDowntimeMs: estimate, forced: false } : { type: 'next-round' };
  }
  if (!outOfRounds && !outOfTime) return { type: 'next-round' };
  const why = outOfRounds
    ? `did not converge in ${args.options.maxRounds} rounds`
    : `did not converge within the completion budget of ${Math.round(budgetMs)} ms`;
  if (args.options.onGiveUp === 'force-switchover')
    return { type: 'switchover', expectedDowntimeMs: estimate, forced: true };
  return {
    type: 'abort',
    reason: `${why} (expected downtime ${Math.round(estimate)} ms > limit ${args.options.downtimeLimitMs} ms)`,
  };
}
