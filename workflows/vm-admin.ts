/**
 * Small workflows through which the CLI and SDK clients manage VMs on a host: each runs one
 * activity on that host's task queue, so a host is reached the same way whether it is this
 * machine or another one. Retries are those of the activity. A bad input (a malformed host or VM
 * id, an unknown key) fails at once with a non-retryable `InvalidInput` failure, before any host
 * is asked.
 */
import { ApplicationFailure, proxyActivities } from '@temporalio/workflow';
import type { z } from 'zod';
import type { CreateVmInput, HostActivities, VmSummary } from '../activities/types';
import {
  destroyVmInputSchema,
  dumpVmMemoryInputSchema,
  listVmsInputSchema,
  parseInput,
  provisionVmInputSchema,
} from '../model';
import { hostTaskQueue, TIMEOUTS } from '../temporal-config/presets';

function onHost(hostId: string) {
  return proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.shortActivityMs * 4,
    scheduleToStartTimeout: TIMEOUTS.shortActivityMs,
    retry: { maximumAttempts: 3, initialInterval: '500ms' },
  });
}

/** `input` parsed by `schema`, or a non-retryable InvalidInput failure naming what is wrong. */
function valid<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, input: unknown, workflow: string): T {
  try {
    return parseInput(schema, input, `${workflow} input`);
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, 'InvalidInput');
  }
}

/** Starts a VM on `hostId`. */
export async function provisionVm(input: { hostId: string } & CreateVmInput): Promise<VmSummary> {
  valid(provisionVmInputSchema, input, 'provisionVm');
  const { hostId, ...spec } = input;
  return onHost(hostId).createVm(spec);
}

/** Lists the VMs of each host in `hostIds`. */
export async function listVms(input: { hostIds: string[] }): Promise<{ hostId: string; vms: VmSummary[] }[]> {
  const { hostIds } = valid(listVmsInputSchema, input, 'listVms');
  return Promise.all(hostIds.map(async (hostId) => ({ hostId, vms: await onHost(hostId).listVms() })));
}

/** Stops and removes a VM on `hostId` (idempotent). */
export async function destroyVm(input: { hostId: string; vmId: string }): Promise<void> {
  const { hostId, vmId } = valid(destroyVmInputSchema, input, 'destroyVm');
  await onHost(hostId).destroyVm({ vmId });
}

/** Writes the memory of `vmId` on `hostId` to `path` on that host. */
export async function dumpVmMemory(input: {
  hostId: string;
  vmId: string;
  path: string;
  at?: 'now' | 'resume';
}): Promise<{ state: string; pagesWritten: number }> {
  const { hostId, vmId, path, at } = valid(dumpVmMemoryInputSchema, input, 'dumpVmMemory');
  return onHost(hostId).dumpVmMemory({ vmId, path, ...(at !== undefined ? { at } : {}) });
}
