/**
 * The input of `migrateVm` and of its updates, as one schema shared by the workflow, its update
 * validators, the CLI and any SDK client. Objects refuse unknown keys; a null option counts as not
 * given (clients that serialise absent fields as null send them so). Defaults and the checks that
 * need more than the shape (the store's form) are applied by `resolveMigrationOptions` in
 * workflows/policy.ts.
 */
import { z } from 'zod';
import { booleanValue, checked, nonEmptyString, oneOf, positiveInteger } from './checks';
import { idSchema, isValidId } from './ids';

/** Past the budget or round limit: stun and switch over anyway, or roll back. */
export type GiveUpAction = 'force-switchover' | 'abort';

/** Every give-up action, the default last. */
export const GIVE_UP_ACTIONS: readonly GiveUpAction[] = ['abort', 'force-switchover'];

/**
 * The vCPU throttle policies a migration may choose. `history` is sdps started from the throttle
 * that let the VM's last migration converge.
 */
export type ThrottlePolicy = 'sdps' | 'history' | 'auto-converge' | 'none';

/** Every policy, the default first. */
export const THROTTLE_POLICIES: readonly ThrottlePolicy[] = ['sdps', 'history', 'auto-converge', 'none'];

/** Highest throttle any policy or request sets (percent of the vCPU's time descheduled). */
export const MAX_THROTTLE_PERCENT = 99;

/**
 * Most pre-copy rounds a migration may be given. Each round adds about ten events to the
 * workflow's history; 1,000 rounds stay under Temporal's 10,240-event warning, where 10,000 would
 * pass its 51,200-event limit, at which the server terminates the workflow mid-migration.
 */
export const MAX_ROUNDS_LIMIT = 1_000;

/** Most pages per stream batch, and most batches in flight. */
export const MAX_BATCH_PAGES = 1024;
export const MAX_CREDIT_WINDOW = 1024;

/** Per-migration policy; every field is optional. */
export interface MigrationOptions {
  /** Largest expected downtime at which to switch over (ms); default 300. */
  downtimeLimitMs?: number;
  /** Pre-copy rounds before giving up; default 30, at most MAX_ROUNDS_LIMIT. */
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
  /** Pages per stream batch; default 256 (1 MiB), at most MAX_BATCH_PAGES. */
  batchPages?: number;
  /**
   * Batches in flight the receiver allows; default 16 (16 MiB), at most MAX_CREDIT_WINDOW. Keep
   * window × batch size below the nats-server's max_pending (64 MiB in ferry's config), or the
   * server drops batches as a slow consumer whenever the receiver falls behind (they are then
   * taken from the page file, slowly).
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
  /**
   * Encrypt page data on the stream (NATS) with AES-256-GCM under a key derived from the
   * migration's key (data-plane/page-cipher.ts); default false. The page file still holds pages
   * in clear, and which pages are zero stays visible.
   */
  encrypt?: boolean;
}

/** Input of `migrateVm` (what `temporal workflow start --input` takes). */
export interface MigrateVmInput {
  vmId: string;
  sourceHost: string;
  destinationHost: string;
  policy?: MigrationOptions;
}

/** Argument of the setThrottle update: a percent 0..MAX_THROTTLE_PERCENT, or null for the policy's. */
export interface SetThrottleInput {
  percent: number | null;
}

/** Argument of the setDowntimeLimit update. */
export interface SetDowntimeLimitInput {
  downtimeLimitMs: number;
}

/** `schema`, or null or absent (both read as not given). */
function optional<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>) {
  return schema.nullish().transform((v) => v ?? undefined);
}

/** The schema of MigrationOptions; unknown keys are refused. */
export const migrationOptionsSchema = z
  .object({
    downtimeLimitMs: optional(positiveInteger()),
    maxRounds: optional(positiveInteger(MAX_ROUNDS_LIMIT)),
    completionBudgetSecPerGiB: optional(positiveInteger()),
    onGiveUp: optional(oneOf(GIVE_UP_ACTIONS)),
    throttle: optional(oneOf(THROTTLE_POLICIES)),
    store: optional(nonEmptyString('a directory path or s3://bucket/prefix')),
    storeDir: optional(nonEmptyString('a non-empty path')),
    batchPages: optional(positiveInteger(MAX_BATCH_PAGES)),
    creditWindow: optional(positiveInteger(MAX_CREDIT_WINDOW)),
    switchoverEagerly: optional(booleanValue()),
    keepSourceAfterSwitchover: optional(booleanValue()),
    keepPageFile: optional(booleanValue()),
    encrypt: optional(booleanValue()),
  })
  .strict() as unknown as z.ZodType<MigrationOptions, z.ZodTypeDef, unknown>;

/** The schema of MigrateVmInput: well-formed ids, two different hosts, a valid policy; unknown keys refused. */
export const migrateVmInputSchema = z
  .object({
    vmId: idSchema(),
    sourceHost: idSchema(),
    destinationHost: idSchema(),
    policy: optional(migrationOptionsSchema),
  })
  .strict()
  .superRefine((input, ctx) => {
    if (isValidId(input.sourceHost) && input.sourceHost === input.destinationHost)
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `sourceHost and destinationHost are both ${input.sourceHost}: nothing to migrate`,
      });
  }) as unknown as z.ZodType<MigrateVmInput, z.ZodTypeDef, unknown>;

/** A throttle percent as a request gives it: a number 0..MAX_THROTTLE_PERCENT, or null. */
export const throttlePercentSchema = checked(
  (v): v is number | null =>
    v === null || (typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_THROTTLE_PERCENT),
  `a number from 0 to ${MAX_THROTTLE_PERCENT}, or null for the policy's`,
  'throttle percent',
);

/** The schema of SetThrottleInput; unknown keys are refused. */
export const setThrottleInputSchema = z.object({ percent: throttlePercentSchema }).strict() as unknown as z.ZodType<
  SetThrottleInput,
  z.ZodTypeDef,
  unknown
>;

/** The schema of SetDowntimeLimitInput; unknown keys are refused. */
export const setDowntimeLimitInputSchema = z
  .object({ downtimeLimitMs: positiveInteger() })
  .strict() as unknown as z.ZodType<SetDowntimeLimitInput, z.ZodTypeDef, unknown>;
