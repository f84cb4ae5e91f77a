/**
 * Small workflows through which the CLI and SDK clients manage VMs on a host: each runs one
 * activity on that host's task queue, so a host is reached the same way whether it is this
 * machine or another one. Retries are those of the activity; they fail fast on bad input.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { CreateVmInput, HostActivities, VmSummary } from '../activities/types';
import { hostTaskQueue, TIMEOUTS } from '../temporal-config/presets';

function onHost(hostId: string) {
  return proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.shortActivityMs * 4,
    scheduleToStartTimeout: TIMEOUTS.shortActivityMs,
    retry: { maximumAttempts: 3, initialInterval: '500ms' },
  });
}

/** Starts a VM on `hostId`. */
export async function provisionVm(input: { hostId: string } & CreateVmInput): Promise<VmSummary> {
  const { hostId, ...spec } = input;
  return onHost(hostId).createVm(spec);
}

/** Lists the VMs of each host in `hostIds`. */
export async function listVms(input: { hostIds: string[] }): Promise<{ hostId: string; vms: VmSummary[] }[]> {
  return Promise.all(input.hostIds.map(async (hostId) => ({ hostId, vms: await onHost(hostId).listVms() })));
}

/** Stops and removes a VM on `hostId` (idempotent). */
export async function destroyVm(input: { hostId: string; vmId: string }): Promise<void> {
  await onHost(input.hostId).destroyVm({ vmId: input.vmId });
}

/** Writes the memory of `vmId` on `hostId` to `path` on that host. */
export async function dumpVmMemory(input: {
  hostId: string;
  vmId: string;
  path: string;
}): Promise<{ state: string; pagesWritten: number }> {
  return onHost(input.hostId).dumpVmMemory({ vmId: input.vmId, path: input.path });
}
