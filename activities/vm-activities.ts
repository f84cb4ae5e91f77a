/**
 * The VM administration activities of a host agent: create, list, destroy and dump VMs. A VM id
 * is registered in the shared store (an ownership epoch, compare-and-swap) before its VM is
 * created, and released when its owner destroys it, so the same id cannot run on two hosts, even
 * when two creations race. Each checks its VM id against the one id pattern (model/ids.ts) at
 * entry, so a `../` id is refused before any file or store is touched.
 *
 * Paths stay under their roots (store/safe-path.ts): a VM id reaches the file system only through
 * the driver's records and the store, which refuse ids that climb out; a memory dump is written
 * only under the host's dumps folder (`<FERRY_STATE_DIR>/dumps`): a relative path is taken inside
 * it, an absolute path must already lie inside it, anything else is refused (PathEscapeError).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { validateId } from '../model';
import { claimOwnership } from '../store/page-store';
import { openPageStore } from '../store/open-store';
import { makePrivateDir, pathUnder, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../store/safe-path';
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
        ...(input.driver !== undefined ? { driver: input.driver } : {}),
      };
      const running = await driver.getVm(input.vmId);
      if (running) {
        throw ApplicationFailure.nonRetryable(
          `VM ${input.vmId} already exists: a ${running.mode} VMM runs it on host ${hostId} as pid ${running.pid}`,
          FAILURE_TYPES.vmExists,
        );
      }
      // The VM id is registered in the shared store before anything starts: one id, one owner,
      // across all hosts. Of two creations at once (here or elsewhere) one wins the epoch and the
      // other starts nothing.
      const store = openPageStore(host.defaultStore);
      const owner = await store.readOwner(input.vmId);
      const claim =
        owner && owner.hostId !== hostId
          ? { won: false, record: owner }
          : await claimOwnership(store, {
              vmId: input.vmId,
              epoch: (owner?.epoch ?? 0) + 1,
              hostId,
              migrationId: 'created',
            });
      if (!claim.won) {
        throw ApplicationFailure.nonRetryable(
          `VM ${input.vmId} already exists: the shared store records it on host ${claim.record.hostId}`,
          FAILURE_TYPES.vmExists,
        );
      }
      let record;
      try {
        record = await driver.createVm(spec);
      } catch (err) {
        // Nothing runs under the id this call registered: give it back.
        if ((err as Error).name !== 'VmExistsError')
          await store.releaseOwnership(input.vmId, hostId).catch(() => undefined);
        throw err;
      }
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

    dumpVmMemory: guarded(
      async ({ vmId, path: requested, at }: { vmId: string; path: string; at?: 'now' | 'resume' }) => {
        checkedVmId(vmId);
        const target = pathUnder(host.dumpsDir, requested, 'dump path');
        if (!(await driver.getVm(vmId)))
          throw ApplicationFailure.nonRetryable(`VM ${vmId} is not on host ${hostId}`, FAILURE_TYPES.vmNotFound);
        await makePrivateDir(path.dirname(target));
        // The folder is the host's own, whoever created it first (a client on this machine may have).
        await fs.chmod(host.dumpsDir, PRIVATE_DIR_MODE);
        // Created here 0600, so the VMM's write (which keeps an existing file's mode) never leaves
        // guest memory readable by others, whatever its umask.
        await (await fs.open(target, 'w', PRIVATE_FILE_MODE)).close();
        await fs.chmod(target, PRIVATE_FILE_MODE);
        await call(vmId, 'dumpMemory', { path: target, ...(at !== undefined ? { at } : {}) });
        const status = await call<{ vcpu: { state: string; pagesWritten: number } }>(vmId, 'status');
        return { state: status.vcpu.state, pagesWritten: status.vcpu.pagesWritten };
      },
    ),
  };
}
