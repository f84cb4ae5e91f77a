/**
 * Failures inside the switchover, each at an exact point armed through the VMM's fault hook
 * (data-plane/fault-points.ts): the VMM process really SIGKILLs or SIGSTOPs itself there, or the
 * source really ignores the destination's answer. After each: where the VM runs, that exactly one
 * copy runs (or none, when its only process died), and its memory checked page by page.
 */
import * as path from 'node:path';
import { compareWithPageFile } from '../../verification';
import { openPageStore } from '../../store/open-store';
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import {
  endedResult,
  expectSameMemory,
  migrateNewGuest,
  runningCopies,
  useCluster,
  vmmCall,
  engineCall,
} from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster();

async function armFault(hostId: string, vmId: string, fault: Record<string, unknown>): Promise<void> {
  await engineCall(fx.cluster, hostId, vmId, 'migration.armFault', fault);
}

async function vmsOn(hostId: string): Promise<string[]> {
  const [listing] = await fx.ferry.listVms([hostId]);
  return (listing?.vms ?? []).map((vm) => vm.vmId);
}

async function waitForPhase(workflowId: string, phase: string): Promise<void> {
  for (let i = 0; i < 1_200; i += 1) {
    if ((await fx.ferry.progress(workflowId)).phase === phase) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`migration ${workflowId} never reached phase ${phase}`);
}

test('source VMM killed once the final pages are durable in the page file: the destination finishes from the file', async () => {
  const vmId = 'source-dies-late';
  const { workflowId } = await migrateNewGuest(fx, vmId, 71, { keepPageFile: true });
  await armFault('h1', vmId, { point: 'source.final-pages-durable', action: 'sigkill' });

  const result = await endedResult(fx, workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.incidents).toContainEqual(
    expect.objectContaining({ at: 'switchover', what: expect.stringContaining('exited') }),
  );
  expect(await runningCopies(fx, vmId)).toEqual(['h2']);
  // The source's memory at stun survives only in the page file: compare the destination with it.
  const check = await compareWithPageFile(fx.ferry, {
    vmId,
    hostId: 'h2',
    store: openPageStore(fx.cluster.env.store, fx.cluster.processEnv),
    migrationId: result.migrationId,
    dir: path.join(fx.cluster.env.stateDir, 'dumps'),
  });
  expect(check.details).toEqual([]);
  expect(check.ok).toBe(true);
  expect(check.identical + check.rewrittenAfterResume).toBe((512 * 2 ** 20) / PAGE_SIZE_BYTES);
  await fx.ferry.destroyVm('h2', vmId);
});

test('source VMM killed right after the stun, before the final pages are durable: the migration fails and says why', async () => {
  const vmId = 'source-dies-early';
  const { workflowId } = await migrateNewGuest(fx, vmId, 72);
  await armFault('h1', vmId, { point: 'source.after-stun', action: 'sigkill' });

  const result = await endedResult(fx, workflowId);
  expect(result.outcome).toBe('failed');
  expect(result.runningOn).toBeNull();
  expect(result.reason).toContain('exited');
  expect(result.reason).toContain('the source VM could not be resumed');
  // The destination's copy, never complete, is removed; no copy runs.
  expect(await runningCopies(fx, vmId)).toEqual([]);
  expect(await vmsOn('h2')).not.toContain(vmId);
});

test('destination frozen when asked to finish: the source resumes, and the destination, once thawed, never does', async () => {
  const vmId = 'destination-freezes';
  const { workflowId, destinationPid } = await migrateNewGuest(fx, vmId, 73);
  await armFault('h2', vmId, { point: 'destination.final', action: 'sigstop' });

  // The source gives up waiting for the frozen destination and takes the ownership epoch back;
  // the rollback then waits on the destination's VMM, so it is thawed now.
  await waitForPhase(workflowId, 'rolling-back');
  // (The frozen destination answers nothing; only the source is asked before the thaw.)
  const source = await vmmCall<{ vcpu: { state: string } }>(fx.cluster, 'h1', vmId, 'status');
  expect(source.vcpu.state).toBe('running');
  process.kill(destinationPid, 'SIGCONT');

  const result = await endedResult(fx, workflowId);
  expect(result).toMatchObject({ outcome: 'failed', runningOn: 'h1' });
  expect(result.reason).toContain('the destination did not pick up the final request');
  expect(await runningCopies(fx, vmId)).toEqual(['h1']);
  expect(await vmsOn('h2')).not.toContain(vmId);
  const verify = await vmmCall<{ badPages: number; checked: number }>(fx.cluster, 'h1', vmId, 'verify');
  expect(verify).toMatchObject({ badPages: 0, checked: (512 * 2 ** 20) / PAGE_SIZE_BYTES });
  await fx.ferry.destroyVm('h1', vmId);
});

test('destination resumed but the source never hears it: the source stays stunned and the migration completes', async () => {
  const vmId = 'answer-lost';
  const { workflowId } = await migrateNewGuest(fx, vmId, 74);
  await armFault('h1', vmId, { point: 'source.final-reply', action: 'drop' });

  const result = await endedResult(fx, workflowId);
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.incidents).toContainEqual(expect.objectContaining({ at: 'switchover' }));
  expect(await runningCopies(fx, vmId)).toEqual(['h2']);
  await expectSameMemory(fx, vmId);
  await fx.ferry.destroyVm('h1', vmId);
  await fx.ferry.destroyVm('h2', vmId);
});
