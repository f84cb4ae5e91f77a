/**
 * Read-only probes into the VMM processes of the soak's cluster, through the same control sockets
 * the host agents use. They read the hosts' VM records but never change them (unlike the driver,
 * which removes stale records), and every call is bounded: a VMM that was killed or stopped
 * answers nothing, and the soak must carry on.
 */
import * as path from 'node:path';
import type { IncomingStatus } from '../data-plane';
import { isVmmAlive, VmRecordStore, type VmRecord } from '../vmm/vm-records';
import { VmmClient } from '../vmm/vmm-client';
import type { VmmStatus } from '../vmm/vmm-methods';
import { callEngine, type EngineMethod, type EngineParams, type EngineResults } from '../data-plane/engine-methods';

/** How long a probe waits to connect and for an answer (ms). */
export const PROBE_TIMEOUT_MS = 2_000;
/** How long to wait for the first page batch of a migration at the destination (ms). */
export const PAGES_FLOWING_TIMEOUT_MS = 30_000;

/** Where the VMMs of a cluster live: its state directory. */
export interface VmmLocator {
  stateDir: string;
}

/** The record of `vmId` on `hostId` if its VMM process is alive, else undefined. */
export async function liveVmm(at: VmmLocator, hostId: string, vmId: string): Promise<VmRecord | undefined> {
  const store = new VmRecordStore(path.join(at.stateDir, 'hosts', hostId, 'vms'));
  const record = await store.read(vmId);
  return record && isVmmAlive(record.pid, vmId) ? record : undefined;
}

/**
 * Calls `method` on the VMM of `vmId` on `hostId`. Throws if the VMM is not alive, does not
 * connect or does not answer within `timeoutMs` (default PROBE_TIMEOUT_MS).
 */
export async function vmmCall<T>(
  at: VmmLocator,
  hostId: string,
  vmId: string,
  method: string,
  params?: unknown,
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<T> {
  const record = await liveVmm(at, hostId, vmId);
  if (!record) throw new Error(`no live VMM of VM ${vmId} on host ${hostId}`);
  const client = await VmmClient.connect(record.socketPath, { vmId, timeoutMs });
  try {
    return await client.call<T>(method, params, { timeoutMs });
  } finally {
    client.close();
  }
}

/** Calls engine method `method` on the VMM of `vmId` on `hostId` (data-plane/engine-methods.ts). */
export function engineCall<M extends EngineMethod>(
  at: VmmLocator,
  hostId: string,
  vmId: string,
  method: M,
  ...params: undefined extends EngineParams<M> ? [EngineParams<M>?] : [EngineParams<M>]
): Promise<EngineResults[M]> {
  return callEngine((name, p) => vmmCall(at, hostId, vmId, name, p), method, ...params);
}

/** The vCPU state of `vmId` on `hostId` ('running', 'paused', 'stopped'), or 'absent' if no VMM answers. */
export async function vcpuState(at: VmmLocator, hostId: string, vmId: string): Promise<string> {
  try {
    return (await vmmCall<VmmStatus>(at, hostId, vmId, 'status')).vcpu.state;
  } catch {
    return 'absent';
  }
}

/** The hosts among `hostIds` where a copy of `vmId` runs (vCPU state 'running'). */
export async function runningCopies(at: VmmLocator, hostIds: readonly string[], vmId: string): Promise<string[]> {
  const states = await Promise.all(hostIds.map((h) => vcpuState(at, h, vmId)));
  return hostIds.filter((_, i) => states[i] === 'running');
}

/**
 * The migration id of workflow `workflowId` at the destination `hostId`, if its incoming migration
 * is there: the workflow id made safe for subjects and file names, followed by a suffix of the run.
 */
export async function incomingMigrationId(
  at: VmmLocator,
  hostId: string,
  vmId: string,
  workflowId: string,
): Promise<string | undefined> {
  const base = workflowId.replace(/[^A-Za-z0-9_-]/g, '_');
  const { migrationIds } = await engineCall(at, hostId, vmId, 'migration.activeIncoming');
  return migrationIds.find((id) => id === base || id.startsWith(`${base}-`));
}

/** The status of the incoming migration of workflow `workflowId` at the destination, if one is there. */
async function incomingStatusOf(
  at: VmmLocator,
  hostId: string,
  vmId: string,
  workflowId: string,
): Promise<IncomingStatus | undefined> {
  const migrationId = await incomingMigrationId(at, hostId, vmId, workflowId);
  return migrationId === undefined
    ? undefined
    : engineCall(at, hostId, vmId, 'migration.incomingStatus', { migrationId });
}

/**
 * Resolves once the destination VMM has applied a page batch of the migration `workflowId`;
 * rejects after PAGES_FLOWING_TIMEOUT_MS or as soon as `ended` reports that the migration is over.
 */
export async function pagesFlowing(
  at: VmmLocator,
  destinationHost: string,
  vmId: string,
  workflowId: string,
  ended: () => boolean,
): Promise<void> {
  const deadline = Date.now() + PAGES_FLOWING_TIMEOUT_MS;
  while (!ended()) {
    const status = await incomingStatusOf(at, destinationHost, vmId, workflowId).catch(() => undefined);
    if (status && status.batches > 0) return;
    if (Date.now() > deadline)
      throw new Error(`no page of ${workflowId} reached ${destinationHost} in ${PAGES_FLOWING_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`migration ${workflowId} ended before any page reached ${destinationHost}`);
}

/**
 * Whether the VMM of `vmId` on `hostId` has the `migration.armFault` method: it is asked to arm an
 * invalid point, which a VMM with the method refuses as a bad fault and one without it as an
 * unknown method. Nothing is armed either way.
 */
export async function faultHookAvailable(at: VmmLocator, hostId: string, vmId: string): Promise<boolean> {
  try {
    await engineCall(at, hostId, vmId, 'migration.armFault', { point: 'soak.probe', action: 'delay' });
    return true;
  } catch (err) {
    const { kind, remoteName } = err as { kind?: string; remoteName?: string };
    if (kind === 'remote') return remoteName !== 'VmmMethodNotFoundError';
    throw err;
  }
}
