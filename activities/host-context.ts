/**
 * What the host agent's activities share: the host's dependencies, failure types, and helpers to
 * call the VMMs, map errors to Temporal failures and heartbeat during long work.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import * as path from 'node:path';
import type { NatsClientConfig } from '../data-plane/nats-client';
import { callEngine, type EngineMethod, type EngineParams, type EngineResults } from '../data-plane/engine-methods';
import type { HypervisorDriver } from '../vmm/driver';
import { ferryEnvironment, migrationLeaseTtlMs, TIMEOUTS } from '../temporal-config';
import { assertStoreAllowed, parseStoreRef } from '../store/open-store';
import type { VmSummary } from './types';

/** What the activities need from their host. */
export interface HostDeps {
  hostId: string;
  driver: HypervisorDriver;
  /** How this host's VMMs reach nats-server: URL, the host's credentials file, TLS files. */
  nats: NatsClientConfig;
  /** Store (a directory or `s3://bucket/prefix`) used when a migration names none. */
  defaultStore: string;
  /**
   * Directories under which a migration may name a directory store besides `defaultStore`;
   * default FerryEnvironment.storeRoots (FERRY_STORE_ROOTS).
   */
  storeRoots?: readonly string[];
  /** The only folder VM memory dumps are written under; default `<FERRY_STATE_DIR>/dumps`. */
  dumpsDir?: string;
  /**
   * Lease of each migration's engine state in this host's VMMs (ms); default FERRY_LEASE_TTL_MS
   * or DEFAULT_MIGRATION_LEASE_TTL_MS (see temporal-config).
   */
  leaseTtlMs?: number;
  /** The cluster secret migration keys derive from (data-plane/migration-key.ts); created if missing. */
  clusterSecretFile: string;
}

/** Failure types the workflow (and users) can match on. */
export const FAILURE_TYPES = {
  vmNotFound: 'VmNotFound',
  vmExists: 'VmExists',
  storeUnavailable: 'StoreUnavailable',
  notOwner: 'NotOwner',
  switchover: 'SwitchoverFailed',
  invalidInput: 'InvalidInput',
  migrationInProgress: 'MigrationInProgress',
  vmAlreadyMigrating: 'VmAlreadyMigrating',
  vmmExited: 'VmmExited',
  storeUnreachable: 'StoreUnreachable',
  vmStateUnknown: 'VmStateUnknown',
  pathEscape: 'PathEscape',
  storeNotAllowed: 'StoreNotAllowed',
  clusterSecret: 'ClusterSecretUnavailable',
} as const;

/** True if `err` or an error it wraps (its `cause` chain) is named `name`. */
function causedBy(err: unknown, name: string): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth += 1) {
    if (e.name === name) return true;
  }
  return false;
}

/** Maps known errors to non-retryable failures; everything else is retried by Temporal. */
export function toFailure(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const byName: Record<string, string> = {
    VmNotFoundError: FAILURE_TYPES.vmNotFound,
    VmExistsError: FAILURE_TYPES.vmExists,
    StoreUnavailableError: FAILURE_TYPES.storeUnavailable,
    SwitchoverError: FAILURE_TYPES.switchover,
    InvalidVmSpecError: FAILURE_TYPES.invalidInput,
    MigrationInProgressError: FAILURE_TYPES.migrationInProgress,
    VmAlreadyMigratingError: FAILURE_TYPES.vmAlreadyMigrating,
    InvalidSizeError: FAILURE_TYPES.invalidInput,
    InvalidStoreRefError: FAILURE_TYPES.invalidInput,
    StoreUndecidedError: FAILURE_TYPES.vmStateUnknown,
    PathEscapeError: FAILURE_TYPES.pathEscape,
    StoreNotAllowedError: FAILURE_TYPES.storeNotAllowed,
    ClusterSecretError: FAILURE_TYPES.clusterSecret,
  };
  // An error thrown inside a VMM arrives as a VmmCallError carrying the original error's name.
  const remote = err as { kind?: unknown; remoteName?: unknown };
  const name = remote.kind === 'remote' && typeof remote.remoteName === 'string' ? remote.remoteName : err.name;
  // The S3 client has retried for 20 s already: retrying the activity would only multiply that.
  // From a VMM only the message is left of the cause (see StoreUnreachableError's message).
  const unreachable =
    causedBy(err, 'StoreUnreachableError') ||
    (remote.kind === 'remote' && /S3 endpoint unreachable \[/.test(err.message));
  const type = byName[name] ?? (unreachable ? FAILURE_TYPES.storeUnreachable : undefined);
  if (type === undefined) return err;
  return ApplicationFailure.create({ message: err.message, type, nonRetryable: true, cause: err });
}

/** The non-retryable failure of an activity whose VMM process exited under it. */
export function vmmExitedFailure(vmId: string, hostId: string, during: string, cause: unknown): ApplicationFailure {
  return ApplicationFailure.create({
    message: `the VMM of VM ${vmId} on host ${hostId} exited during ${during}`,
    type: FAILURE_TYPES.vmmExited,
    nonRetryable: true,
    ...(cause instanceof Error ? { cause } : {}),
  });
}

/** Runs `work` while heartbeating `details()` every second; stops on cancellation. */
export async function withHeartbeat<T>(work: Promise<T>, details: () => Promise<unknown>): Promise<T> {
  const ctx = Context.current();
  let stopped = false;
  const beat = async (): Promise<void> => {
    while (!stopped) {
      ctx.heartbeat(await details().catch(() => undefined));
      await Promise.race([ctx.sleep(TIMEOUTS.heartbeatIntervalMs), work.catch(() => undefined)]);
    }
  };
  const beating = beat().catch(() => undefined);
  try {
    return await Promise.race([work, ctx.cancelled.then(() => work)]);
  } finally {
    stopped = true;
    await beating;
  }
}

/** Attempt of the activity running this code (above 1 after a retry); 1 outside an activity, as when a test calls one directly. */
export function activityAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
}

/** The host's dependencies plus the helpers built on them. */
export interface HostContext extends HostDeps {
  /** See HostDeps; resolved. */
  dumpsDir: string;
  /**
   * Returns `ref` if this host may use it as a store (see store/open-store.ts assertStoreAllowed);
   * throws StoreNotAllowedError or InvalidStoreRefError.
   */
  allowedStore(ref: string): string;
  leaseTtlMs: number;
  /** Calls `method` on the VMM of `vmId`, without a client-side timeout. */
  call<T>(vmId: string, method: string, params?: unknown): Promise<T>;
  /** Calls engine method `method` on the VMM of `vmId` (data-plane/engine-methods.ts), as `call` does. */
  engine<M extends EngineMethod>(
    vmId: string,
    method: M,
    ...params: undefined extends EngineParams<M> ? [EngineParams<M>?] : [EngineParams<M>]
  ): Promise<EngineResults[M]>;
  /** Wraps an activity so known errors become non-retryable failures. */
  guarded<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R>;
  /** Ids of the migrations the VMM of `vmId` takes part in, in `role`. */
  activeMigrations(vmId: string, role: 'outgoing' | 'incoming'): Promise<string[]>;
  /** The VM's record with its vCPU state, or undefined if it is not on this host. */
  summarize(vmId: string): Promise<VmSummary | undefined>;
}

/** Builds the shared helpers for `deps`. */
export function createHostContext(deps: HostDeps): HostContext {
  const { driver } = deps;

  const call = async <T>(vmId: string, method: string, params?: unknown): Promise<T> => {
    const client = await driver.control(vmId);
    try {
      return await client.call<T>(method, params, { timeoutMs: 0 });
    } catch (err) {
      // A call cut off because the VMM process died is not worth a retry: the VM's process is gone.
      const remote = (err as { kind?: unknown } | null)?.kind === 'remote';
      if (!remote && (await driver.getVm(vmId)) === undefined) throw vmmExitedFailure(vmId, deps.hostId, method, err);
      throw err;
    } finally {
      client.close();
    }
  };
  const engine: HostContext['engine'] = (vmId, method, ...params) =>
    callEngine((name, p) => call(vmId, name, p), method, ...params);
  const guarded =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toFailure(err);
      }
    };

  const activeMigrations = async (vmId: string, role: 'outgoing' | 'incoming'): Promise<string[]> =>
    (await engine(vmId, role === 'outgoing' ? 'migration.activeOutgoing' : 'migration.activeIncoming')).migrationIds;

  const summarize = async (vmId: string): Promise<VmSummary | undefined> => {
    const record = await driver.getVm(vmId);
    if (!record) return undefined;
    const status = await call<{ vcpu: { state: string } }>(vmId, 'status').catch(() => ({
      vcpu: { state: 'unreachable' },
    }));
    return { ...record, state: status.vcpu.state };
  };

  const storeRoots = [...(deps.storeRoots ?? ferryEnvironment().storeRoots)];
  const defaultRef = parseStoreRef(deps.defaultStore);
  if (defaultRef.kind === 'directory') storeRoots.push(defaultRef.dir);
  const allowedRoots = [...new Set(storeRoots)];
  const allowedStore = (ref: string): string => assertStoreAllowed(ref, allowedRoots);
  const dumpsDir = path.resolve(deps.dumpsDir ?? path.join(ferryEnvironment().stateDir, 'dumps'));

  return {
    ...deps,
    leaseTtlMs: deps.leaseTtlMs ?? migrationLeaseTtlMs(),
    dumpsDir,
    allowedStore,
    call,
    engine,
    guarded,
    activeMigrations,
    summarize,
  };
}
