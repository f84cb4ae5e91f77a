/**
 * What the integration tests that migrate QEMU guests on a test cluster share: installing QEMU (or
 * skipping, with the reason, where it cannot be installed), their completion budget, reading a
 * guest's VMM status until it shows what a test waits for, and the two checks every completed
 * migration ends with (RAM equal byte for byte, the guest program carrying on).
 */
import * as path from 'node:path';
import { qemuSetupFailureSync } from '../../../infra/qemu';
import { compareMigratedMemory, type MigratedMemoryCheck } from '../../../verification';
import type { VmmStatus } from '../../../vmm/vmm-methods';
import { vmmCall, type ClusterFixture } from './cluster-fixture';

export const MiB = 2 ** 20;

/** Completion budget of the QEMU tests' migrations: 1,000 s per GiB, 125 s for their 128 MiB guests. */
export const QEMU_BUDGET_SEC_PER_GIB = 1_000;

/**
 * Jest's `test`, where QEMU is installed here (infra/qemu/setup-qemu.sh runs first); else
 * `test.skip`, after a warning naming `what` is skipped and why.
 */
export function qemuTestOrSkip(what: string): typeof test {
  const failure = qemuSetupFailureSync();
  if (failure === undefined) return test;
  console.warn(`skipping ${what}: ${failure}`);
  return test.skip;
}

/** The VMM's status of `vmId` on `hostId` (its guest's heartbeat, vCPU, hypervisor events). */
export function guestStatus(fx: ClusterFixture, hostId: string, vmId: string): Promise<VmmStatus> {
  return vmmCall<VmmStatus>(fx.cluster, hostId, vmId, 'status');
}

/** Polls every 100 ms until `probe` returns a value (at most `timeoutMs`); a probe that throws counts as none yet. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Polls the VMM's status until `done` holds; the error names `what` and the host. */
export function untilStatus(
  fx: ClusterFixture,
  hostId: string,
  vmId: string,
  what: string,
  done: (s: VmmStatus) => boolean,
  timeoutMs = 60_000,
): Promise<VmmStatus> {
  return until(
    `${what} on ${hostId}`,
    async () => {
      const s = await guestStatus(fx, hostId, vmId);
      return done(s) ? s : undefined;
    },
    timeoutMs,
  );
}

/**
 * The stunned source's RAM and the destination's RAM at resume, compared byte for byte: every page
 * equal (the test fails naming the first that differ). Returns the comparison.
 */
export async function expectRamEqual(
  fx: ClusterFixture,
  vmId: string,
  sourceHost: string,
  destinationHost: string,
): Promise<MigratedMemoryCheck> {
  const check = await compareMigratedMemory(fx.ferry, {
    vmId,
    sourceHost,
    destinationHost,
    dir: path.join(fx.cluster.env.stateDir, 'dumps'),
    driver: 'qemu',
  });
  expect(check.details).toEqual([]);
  expect(check).toMatchObject({ ok: true, identical: check.pages });
  expect(check.sourceState).not.toBe('running');
  return check;
}

/**
 * The guest program carries on at `destinationHost` from where it stood at the stunned source: its
 * heartbeat goes on past the source's last, and it completes two more full checks of its memory
 * with no bad page. Returns the destination's status then.
 */
export async function expectGuestCarriesOn(
  fx: ClusterFixture,
  vmId: string,
  sourceHost: string,
  destinationHost: string,
): Promise<VmmStatus> {
  const atStun = (await guestStatus(fx, sourceHost, vmId)).guest;
  expect(atStun).toMatchObject({ state: 'ok', bad: 0 });
  const carriedOn = await untilStatus(
    fx,
    destinationHost,
    vmId,
    'a full check of the guest memory after the migration',
    (s) => (s.guest?.sweeps ?? 0) >= (atStun?.sweeps ?? 0) + 2,
  );
  expect(carriedOn.guest?.seq).toBeGreaterThan(atStun?.seq ?? Infinity);
  expect(carriedOn.guest?.writtenBytes).toBeGreaterThan(atStun?.writtenBytes ?? Infinity);
  expect(carriedOn.guest).toMatchObject({ state: 'ok', bad: 0 });
  expect(carriedOn.vcpu.state).toBe('running');
  return carriedOn;
}
