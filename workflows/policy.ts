/**
 * Migration policy as pure functions: option resolution (validated by the shared schema of
 * model/migration-input.ts), the downtime estimate and the decision after each pre-copy round. No
 * I/O and no clocks, so unit tests call them directly and the workflow replays them deterministically.
 */
import {
  migrationOptionsSchema,
  parseInput,
  setDowntimeLimitInputSchema,
  setThrottleInputSchema,
  type GiveUpAction,
  type MigrationOptions,
  type ThrottlePolicy,
} from '../model';
import type { z } from 'zod';
import { parseStoreRef, type StoreRef } from '../store/store-ref';

export type { GiveUpAction, MigrationOptions } from '../model';

/** Downtime the guest may see at switchover (QEMU's default). */
export const DEFAULT_DOWNTIME_LIMIT_MS = 300;
/** Rounds after which the give-up action applies. */
export const DEFAULT_MAX_ROUNDS = 30;
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
/**
 * Rounds in a row whose stun scan alone (RoundStats.stunScanMs) reached the downtime limit before
 * the migration gives up at once: no round and no throttle shortens that scan, so waiting for the
 * round limit would only spend the guest's time. Two, so one slow scan on a loaded host is not enough.
 */
export const SCAN_OVER_LIMIT_ROUNDS = 2;

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
  /** Encrypt page data on the stream (MigrationOptions.encrypt). */
  encrypt: boolean;
}

/** Thrown for an invalid option; the message names the option and the bad value. */
export class InvalidMigrationOptionError extends Error {
  override readonly name = 'InvalidMigrationOptionError';
}

/** `parseInput` with its InvalidInputError turned into an InvalidMigrationOptionError. */
function parsed<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, raw: unknown, subject: string): T {
  try {
    return parseInput(schema, raw, subject);
  } catch (err) {
    throw new InvalidMigrationOptionError((err as Error).message, { cause: err });
  }
}

/** Throws unless `store` is an absolute directory path or a well-formed `s3://bucket/prefix`. */
function validateStore(store: string, name: string): void {
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
  if (ref.kind === 's3' && name.endsWith('storeDir'))
    throw new InvalidMigrationOptionError(`${name} is a directory; give ${JSON.stringify(store)} as store`);
}

/**
 * Validates `raw` against the policy schema (model/migration-input.ts: unknown keys refused, with
 * a suggestion) and fills in defaults; returns a new object. `at` is the path of the policy in
 * a larger input (`policy`), put before the keys in messages. Throws InvalidMigrationOptionError.
 */
export function resolveMigrationOptions(raw: MigrationOptions | undefined | null, at = ''): ResolvedMigrationOptions {
  const o = raw === undefined || raw === null ? {} : parsed(migrationOptionsSchema, raw, at || 'policy');
  const prefix = at === '' ? '' : `${at}.`;
  if (o.store !== undefined && o.storeDir !== undefined)
    throw new InvalidMigrationOptionError(`give ${prefix}store or ${prefix}storeDir, not both`);
  const store = o.store ?? o.storeDir;
  if (store !== undefined) validateStore(store, `${prefix}${o.store !== undefined ? 'store' : 'storeDir'}`);
  return {
    downtimeLimitMs: o.downtimeLimitMs ?? DEFAULT_DOWNTIME_LIMIT_MS,
    maxRounds: o.maxRounds ?? DEFAULT_MAX_ROUNDS,
    completionBudgetSecPerGiB: o.completionBudgetSecPerGiB ?? DEFAULT_COMPLETION_BUDGET_SEC_PER_GIB,
    onGiveUp: o.onGiveUp ?? DEFAULT_ON_GIVE_UP,
    throttle: o.throttle ?? 'sdps',
    store,
    batchPages: o.batchPages ?? DEFAULT_BATCH_PAGES,
    creditWindow: o.creditWindow ?? DEFAULT_CREDIT_WINDOW,
    keepSourceAfterSwitchover: o.keepSourceAfterSwitchover === true,
    keepPageFile: o.keepPageFile === true,
    switchoverEagerly: o.switchoverEagerly === true,
    encrypt: o.encrypt === true,
  };
}

/**
 * Validates the argument of the setDowntimeLimit update (`{ downtimeLimitMs }`, unknown keys
 * refused); returns the limit (ms). Throws InvalidMigrationOptionError.
 */
export function validateDowntimeLimitInput(args: unknown): number {
  return parsed(setDowntimeLimitInputSchema, args, 'setDowntimeLimit input').downtimeLimitMs;
}

/**
 * Validates the argument of the setThrottle update (`{ percent }`, unknown keys refused); returns
 * the percent rounded to a tenth, or null. Throws InvalidMigrationOptionError.
 */
export function validateThrottleInput(args: unknown): number | null {
  const { percent } = parsed(setThrottleInputSchema, args, 'setThrottle input');
  return percent === null ? null : Math.round(percent * 10) / 10;
}

/** Validates a downtime limit given while a migration runs; returns it. */
export function validateDowntimeLimit(value: unknown): number {
  return validateDowntimeLimitInput({ downtimeLimitMs: value });
}

/**
 * Validates a throttle asked for while a migration runs: a percent of the vCPU's time in
 * 0..MAX_THROTTLE_PERCENT, or null to hand the throttle back to the policy.
 */
export function validateThrottleRequest(value: unknown): number | null {
  return validateThrottleInput({ percent: value });
}

/** The figures of a finished round that the policy looks at. */
export interface RoundSample {
  round: number;
  bytesSent: number;
  durationMs: number;
  pendingDirtyPages: number;
  /** The source's time to find those pages, which the stun repeats (ms; RoundStats.stunScanMs). */
  stunScanMs?: number;
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

/**
 * Expected downtime if the switchover happened now (ms): the stun's search for the last dirty
 * pages (`stunScanMs`, default 0; a QEMU guest's whole memory is compared then) plus pending dirty
 * bytes ÷ throughput.
 */
export function expectedDowntimeMs(pendingBytes: number, throughputBytesPerSec: number, stunScanMs = 0): number {
  if (pendingBytes === 0) return stunScanMs;
  if (throughputBytesPerSec <= 0) return Number.POSITIVE_INFINITY;
  return stunScanMs + (pendingBytes * 1000) / throughputBytesPerSec;
}

/** The estimate spelled out for a reason: `123 ms` or `123 ms, 80 of them the stun's scan`. */
function describeEstimate(estimateMs: number, stunScanMs: number): string {
  const scan = Math.round(stunScanMs);
  return scan > 0 ? `${Math.round(estimateMs)} ms, ${scan} of them the stun's scan` : `${Math.round(estimateMs)} ms`;
}

/** What the workflow does after a round. */
export type NextStep =
  | { type: 'switchover'; expectedDowntimeMs: number; forced: boolean }
  | { type: 'next-round' }
  | { type: 'abort'; reason: string };

/**
 * Decides after a round: within the limit, switch over (after more rounds while they keep halving
 * what is left, unless `switchoverEagerly`); above it, go on until the round limit or the budget
 * is spent, then give up as the options say. The estimate counts the stun's scan (expectedDowntimeMs);
 * when that scan alone has reached the limit SCAN_OVER_LIMIT_ROUNDS rounds in a row, it gives up at once.
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
  const stunScanMs = last.stunScanMs ?? 0;
  const estimate = expectedDowntimeMs(last.pendingDirtyPages * args.pageSizeBytes, throughput, stunScanMs);
  const budgetMs = (args.options.completionBudgetSecPerGiB * 1000 * args.memoryBytes) / 2 ** 30;
  const outOfRounds = args.rounds.length >= args.options.maxRounds;
  const outOfTime = args.elapsedMs >= budgetMs;
  const recent = args.rounds.slice(-SCAN_OVER_LIMIT_ROUNDS);
  const scanOverLimit =
    recent.length === SCAN_OVER_LIMIT_ROUNDS &&
    recent.every((r) => (r.stunScanMs ?? 0) >= args.options.downtimeLimitMs);
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
  if (!outOfRounds && !outOfTime && !scanOverLimit) return { type: 'next-round' };
  const why = scanOverLimit
    ? `cannot meet the downtime limit: finding the last dirty pages at the stun alone takes ${Math.round(stunScanMs)} ms (${SCAN_OVER_LIMIT_ROUNDS} rounds in a row)`
    : outOfRounds
      ? `did not converge in ${args.options.maxRounds} rounds`
      : `did not converge within the completion budget of ${Math.round(budgetMs)} ms`;
  if (args.options.onGiveUp === 'force-switchover')
    return { type: 'switchover', expectedDowntimeMs: estimate, forced: true };
  return {
    type: 'abort',
    reason: `${why} (expected downtime ${describeEstimate(estimate, stunScanMs)} > limit ${args.options.downtimeLimitMs} ms)`,
  };
}
