/**
 * The VM administration activities of a host agent: create, list, destroy and dump VMs. A VM id
 * is registered in the shared store when the VM is created and released when its owner destroys
 * it, so the same id cannot run on two hosts. Each checks its VM id against the one id pattern
 * (model/ids.ts) at entry, so a `../` id is refused before any file or store is touched.
 */
import { ApplicationFailure } from '@temporalio/common';
import { validateId } from '../model';
import { claimOwnership } from '../store/page-store';
import { openPageStore } from '../store/open-store';
import { FAILURE_TYPES, type HostContext } from './host-context';
import type { CreateVmInput, HostActivities, VmSummary } from './types';

/** `vmId` if well formed; a non-retryable InvalidInput failure naming the value otherwise. */
function checkedVmId(vmId: unknown): string {
  try {
    return validateId('vmId', vmId);
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, FAILURE_TYPES.invalidInput);
  }
}

/** The activities that manage VMs, by name. */
export type VmActivities = Pick<HostActivities, 'createVm' | 'listVms' | 'destroyVm' | 'dumpVmMemory'>;

/** Builds the VM activities of the host in `host`. */
export function createVmActivities(host: HostContext): VmActivities {
  const { driver, hostId, call, guarded, summarize } = host;
  return {
    createVm: guarded(async (input: CreateVmInput): Promise<VmSummary> => {
      checkedVmId(input.vmId);
      const spec = {
        vmId: input.vmId,
        memoryBytes: input.memoryBytes,
        workload: input.workload,
        ...(input.seed !== undefined ? { seed: input.seed } : {}),
      };
      // The VM id is registered in the shared store: one id, one owner, across all hosts.
      const owner = await openPageStore(host.defaultStore).readOwner(input.vmId);
      if (owner && owner.hostId !== hostId) {
        throw ApplicationFailure.nonRetryable(
          `VM ${input.vmId} already exists: the shared store records it on host ${owner.hostId}`,
          FAILURE_TYPES.vmExists,
        );
      }
      const record = await driver.createVm(spec);
      await claimOwnership(openPageStore(host.defaultStore), {
        vmId: input.vmId,
        epoch: (owner?.epoch ?? 0) + 1,
        hostId,
        migrationId: 'created',
      });
      return (await summarize(record.vmId)) ?? { ...record, state: 'unknown' };
    }),

    listVms: guarded(async (): Promise<VmSummary[]> => {
      const records = await driver.listVms();
      const out: VmSummary[] = [];
      for (const r of records) out.push((await summarize(r.vmId)) ?? { ...r, state: 'gone' });
      return out;
    }),

    destroyVm: guarded(async ({ vmId }: { vmId: string }): Promise<void> => {
      checkedVmId(vmId);
      await driver.destroyVm(vmId);
      // A VM destroyed by its owner is gone; a stunned source copy destroyed after a migration
      // leaves the new owner's record alone.
      await openPageStore(host.defaultStore).releaseOwnership(vmId, hostId);
    }),

    dumpVmMemory: guarded(async ({ vmId, path }: { vmId: string; path: string }) => {
      checkedVmId(vmId);
      if (!(await driver.getVm(vmId)))
        throw ApplicationFailure.nonRetryable(`VM ${vmId} is not on host ${hostId}`, FAILURE_TYPES.vmNotFound);
      await call(vmId, 'dumpMemory', { path });
      const status = await call<{ vcpu: { state: string; pagesWritten: number } }>(vmId, 'status');
      return { state: status.vcpu.state, pagesWritten: status.vcpu.pagesWritten };
    }),
  };
}
