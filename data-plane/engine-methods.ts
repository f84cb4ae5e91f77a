/**
 * The migration engine's methods on a VMM's control socket, as one typed table: for each method
 * the schema of its params, checked by the VMM before the handler runs (a request whose params
 * are not what the method takes is refused whole, naming every wrong key), and the type of its
 * result. The host agent, the tests and the soak call the engine through `callEngine`, so a
 * method's name, params and result are written once, here.
 *
 * Params are small JSON from the host agent over a local socket; still, they are trusted no more
 * than any other input: ids must be ids, counts must be in range, unknown keys are errors.
 */
import { z } from 'zod';
import {
  MAX_BATCH_PAGES,
  MAX_CREDIT_WINDOW,
  MAX_THROTTLE_PERCENT,
  THROTTLE_POLICIES,
  idSchema,
  parseInput,
} from '../model';
import { booleanValue, checked, nonEmptyString, oneOf, positiveInteger } from '../model/checks';
import type { VmmHandler } from '../vmm/extensions';
import type { FaultSpec } from './fault-points';
import { MIGRATION_KEY_BYTES } from './migration-key';
import type {
  IncomingStartInput,
  IncomingStatus,
  OutgoingStartInput,
  RoundStats,
  RoundThrottleInput,
  SwitchoverStats,
} from '../model/protocol';

/** The lease a start or claim may set (FERRY_LEASE_TTL_MS of the host agent). */
interface LeaseTtl {
  leaseTtlMs?: number;
}

/** `schema`, or absent. */
function optional<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>) {
  return schema.optional();
}

/**
 * `schema` typed as `T`. zod types an optional key as `key?: V | undefined`; parsed JSON never
 * holds a key set to undefined, so its output is a `T` under exactOptionalPropertyTypes.
 */
function typed<T>(schema: z.ZodTypeAny): z.ZodType<T, z.ZodTypeDef, unknown> {
  return schema as z.ZodType<T, z.ZodTypeDef, unknown>;
}

/** A throttle in percent: any number from 0 to MAX_THROTTLE_PERCENT (policies compute fractions). */
function throttlePercent(): z.ZodType<number, z.ZodTypeDef, unknown> {
  return checked(
    (v): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_THROTTLE_PERCENT,
    `a number from 0 to ${MAX_THROTTLE_PERCENT}`,
  );
}

/** An integer of 0 or more. */
function nonNegativeInteger(): z.ZodType<number, z.ZodTypeDef, unknown> {
  return checked(
    (v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0,
    'an integer of 0 or more',
  );
}

/**
 * Longest migration id: a file name (the store names a folder after it). A migration id is the
 * workflow id and run id joined (workflows/migrate-vm.ts), so it may be longer than MAX_ID_CHARS.
 */
export const MAX_MIGRATION_ID_CHARS = 255;
const MIGRATION_ID = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

const migrationRef = {
  migrationId: checked(
    (v): v is string => typeof v === 'string' && v.length <= MAX_MIGRATION_ID_CHARS && MIGRATION_ID.test(v),
    `1-${MAX_MIGRATION_ID_CHARS} letters, digits, _ or -, starting with a letter or digit`,
  ),
};
const leaseTtl = { leaseTtlMs: optional(positiveInteger()) };
/** No params: absent, or null (as VmmClient sends none). */
const noParams = z.object({}).strict().nullish();
const natsConfig = z
  .object({
    url: nonEmptyString('a nats:// URL'),
    credentialsFile: optional(nonEmptyString('a path')),
    tlsCaFile: optional(nonEmptyString('a path')),
  })
  .strict();
const roundThrottle = z
  .object({
    policy: oneOf(THROTTLE_POLICIES),
    percent: throttlePercent(),
    adjustWithinRound: booleanValue(),
  })
  .strict();
/** Where both sides start: the migration, its NATS, store and key. */
const sideStart = {
  ...migrationRef,
  nats: natsConfig,
  store: nonEmptyString('a directory path or s3://bucket/prefix'),
  hostId: idSchema(),
  baseEpoch: nonNegativeInteger(),
  key: checked(
    (v): v is string => typeof v === 'string' && Buffer.from(v, 'base64').length === MIGRATION_KEY_BYTES,
    `a base64 key of ${MIGRATION_KEY_BYTES} bytes`,
  ),
  ...leaseTtl,
};

/** The params of every engine method. */
export const ENGINE_PARAMS = {
  /** Test and soak hook (fault-points.ts checks the spec itself). */
  'migration.armFault': z.unknown(),
  'migration.activeOutgoing': noParams,
  'migration.activeIncoming': noParams,
  'migration.describe': noParams,
  'migration.claimOutgoing': z.object({ ...migrationRef, ...leaseTtl }).strict(),
  'migration.renewLease': z
    .object({ ...migrationRef, role: oneOf(['outgoing', 'incoming'] as const), ...leaseTtl })
    .strict(),
  'migration.startOutgoing': typed<OutgoingStartInput & LeaseTtl>(
    z
      .object({
        ...sideStart,
        destinationHost: idSchema(),
        batchPages: positiveInteger(MAX_BATCH_PAGES),
        encrypt: optional(booleanValue()),
      })
      .strict(),
  ),
  'migration.sendRound': z
    .object({
      ...migrationRef,
      round: nonNegativeInteger(),
      storeFirst: optional(booleanValue()),
      throttle: optional(typed<RoundThrottleInput>(roundThrottle)),
    })
    .strict(),
  'migration.setThrottle': z.object({ ...migrationRef, percent: throttlePercent() }).strict(),
  'migration.outgoingProgress': z.object(migrationRef).strict(),
  'migration.switchover': z.object({ ...migrationRef, resumeTimeoutMs: positiveInteger() }).strict(),
  'migration.settleOutgoing': z.object(migrationRef).strict(),
  'migration.abortOutgoing': z.object(migrationRef).strict(),
  'migration.startIncoming': typed<IncomingStartInput & LeaseTtl>(
    z
      .object({
        ...sideStart,
        sourceHost: idSchema(),
        creditWindow: positiveInteger(MAX_CREDIT_WINDOW),
        rebuildFromStore: optional(booleanValue()),
      })
      .strict(),
  ),
  'migration.incomingStatus': z.object(migrationRef).strict(),
  'migration.settleIncoming': z.object(migrationRef).strict(),
  'migration.abortIncoming': z.object({ ...migrationRef, settle: optional(booleanValue()) }).strict(),
} as const;

/** The name of an engine method. */
export type EngineMethod = keyof typeof ENGINE_PARAMS;

/** What a caller passes to `method`. */
export type EngineParams<M extends EngineMethod> = z.output<(typeof ENGINE_PARAMS)[M]>;

/** What the engine's state in a VMM looks like (`migration.describe`). */
export interface MigrationEngineState {
  outgoing: { migrationId: string; state: string; leaseExpiresInMs: number } | null;
  incoming: { migrationIds: string[]; leaseExpiresInMs: number | null };
  /** NATS connections the engine holds open in this VMM. */
  natsConnections: number;
  /** Whether this VMM owns its VM (see vmm/guest-run.ts). */
  owner: boolean;
}

/** What the source reports while it sends (`migration.outgoingProgress`). */
export interface OutgoingProgress {
  round: number;
  pagesSent: number;
  bytesSent: number;
  state: string;
  rejectedMessages: number;
}

/** The result of every engine method. */
export interface EngineResults {
  'migration.armFault': FaultSpec;
  'migration.activeOutgoing': { migrationIds: string[] };
  'migration.activeIncoming': { migrationIds: string[] };
  'migration.describe': MigrationEngineState;
  'migration.claimOutgoing': { migrationId: string; leaseTtlMs: number };
  'migration.renewLease': { renewed: boolean };
  'migration.startOutgoing': { state: string };
  'migration.sendRound': RoundStats;
  'migration.setThrottle': { percent: number };
  'migration.outgoingProgress': OutgoingProgress;
  'migration.switchover': SwitchoverStats;
  'migration.settleOutgoing': { settled: true };
  'migration.abortOutgoing': { known: false; running: boolean } | { known: true; state: string; running: boolean };
  'migration.startIncoming': IncomingStatus;
  'migration.incomingStatus': IncomingStatus;
  'migration.settleIncoming': IncomingStatus;
  'migration.abortIncoming': { known: false } | { known: true; state: IncomingStatus['state'] };
}

/** The engine's handlers, one per method, each given its checked params. */
export type EngineHandlers = {
  [M in EngineMethod]: (params: EngineParams<M>) => Promise<EngineResults[M]>;
};

/** The handlers as the VMM serves them: each checks its params against ENGINE_PARAMS first. */
export function servedEngineHandlers(handlers: EngineHandlers): Record<EngineMethod, VmmHandler> {
  const served = {} as Record<EngineMethod, VmmHandler>;
  for (const method of Object.keys(ENGINE_PARAMS) as EngineMethod[]) {
    const handler = handlers[method] as (params: unknown) => Promise<unknown>;
    const schema = ENGINE_PARAMS[method] as z.ZodType<unknown, z.ZodTypeDef, unknown>;
    served[method] = async (params) => handler(parseInput(schema, params, `${method} params`));
  }
  return served;
}

/** Anything that calls a VMM method by name: a VmmClient, or a host agent's `call`. */
export type VmmCaller = <T>(method: string, params?: unknown) => Promise<T>;

/** Calls engine method `method` through `caller`, typed by the table. */
export function callEngine<M extends EngineMethod>(
  caller: VmmCaller,
  method: M,
  ...params: undefined extends EngineParams<M> ? [EngineParams<M>?] : [EngineParams<M>]
): Promise<EngineResults[M]> {
  return caller<EngineResults[M]>(method, params[0]);
}
