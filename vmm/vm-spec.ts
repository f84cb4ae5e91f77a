/**
 * What a VM is made of (id, memory size, workload, seed, fill ratio) and its validation: the one
 * place that decides what a valid VM looks like, for the driver and the VMM command line alike.
 */
import { ID_RULE, isValidId } from '../model';
import { InvalidVmSpecError } from './errors';
import { PAGE_SIZE_BYTES } from './guest-memory';
import { DEFAULT_WORKLOAD, resolveWorkload } from './workload';
import type { Workload } from './workload';

/** Seed of a VM created without one. */
export const DEFAULT_SEED = 1;
/** Share of pages written at creation when none is given: all of them. */
export const DEFAULT_FILL_RATIO = 1;
/** Largest memory of a simulated VM (bytes): 16 GiB, far beyond what a test host holds. */
export const MAX_MEMORY_BYTES = 16 * 1024 ** 3;

/** Which hypervisor runs a VM: ferry's simulated guest, or a Linux guest in QEMU. */
export type VmDriverName = 'simulated' | 'qemu';
/** The drivers, in the order help texts list them. */
export const VM_DRIVERS: readonly VmDriverName[] = ['simulated', 'qemu'];
/** Smallest memory of a QEMU guest (bytes): its kernel and initramfs need 64 MiB. */
export const MIN_QEMU_MEMORY_BYTES = 64 * 1024 ** 2;
/** Largest memory of a QEMU guest (bytes): a test host holds its RAM file and the source's shadow. */
export const MAX_QEMU_MEMORY_BYTES = 4 * 1024 ** 3;

/**
 * A VM to create. `memoryBytes` is a positive multiple of 4096; `workload` is what its vCPU does;
 * `seed` (integer, default DEFAULT_SEED) makes page choice and content reproducible; `fillRatio`
 * (0..1, default 1) is the share of pages, from page 0, written once at creation (for a QEMU
 * guest: the share of the most its guest program can fill). `driver` (default `simulated`) names
 * the hypervisor; a QEMU guest's memory is a multiple of 1 MiB from 64 MiB to 4 GiB.
 */
export interface VmSpec {
  vmId: string;
  memoryBytes: number;
  workload: Workload;
  seed?: number;
  fillRatio?: number;
  driver?: VmDriverName;
}

/** A validated VmSpec with defaults applied and the page count derived. */
export interface ResolvedVmSpec {
  vmId: string;
  memoryBytes: number;
  pageCount: number;
  workload: Workload;
  seed: number;
  fillRatio: number;
  driver: VmDriverName;
}

/**
 * Checks a VM id against the one id pattern (model/ids.ts): 1–64 letters, digits, '_' and '-',
 * starting with a letter or digit (it names files and sockets). Throws InvalidVmSpecError otherwise.
 */
export function validateVmId(vmId: unknown): string {
  if (!isValidId(vmId)) throw new InvalidVmSpecError('vmId', `vmId must be ${ID_RULE}, got ${JSON.stringify(vmId)}`);
  return vmId;
}

/**
 * Checks a memory size (bytes): a positive multiple of 4096, at most MAX_MEMORY_BYTES; returns
 * the page count. Throws InvalidVmSpecError: "memoryBytes must be a positive multiple of 4096, got 1000".
 */
export function pageCountOf(memoryBytes: unknown): number {
  if (
    typeof memoryBytes !== 'number' ||
    !Number.isSafeInteger(memoryBytes) ||
    memoryBytes <= 0 ||
    memoryBytes % PAGE_SIZE_BYTES !== 0
  ) {
    throw new InvalidVmSpecError('memoryBytes', `memoryBytes must be a positive multiple of 4096, got ${memoryBytes}`);
  }
  if (memoryBytes > MAX_MEMORY_BYTES) {
    throw new InvalidVmSpecError('memoryBytes', `memoryBytes must be at most ${MAX_MEMORY_BYTES}, got ${memoryBytes}`);
  }
  return memoryBytes / PAGE_SIZE_BYTES;
}

/**
 * Validates a VM spec (which may come from untrusted JSON) and returns a new object with defaults
 * applied. Throws InvalidVmSpecError naming the field and the bad value.
 */
export function resolveVmSpec(spec: VmSpec): ResolvedVmSpec {
  const vmId = validateVmId(spec.vmId);
  const pageCount = pageCountOf(spec.memoryBytes);
  let workload: Workload;
  try {
    workload = resolveWorkload(spec.workload ?? DEFAULT_WORKLOAD);
  } catch (err) {
    throw new InvalidVmSpecError('workload', (err as Error).message, { cause: err });
  }
  const seed = spec.seed ?? DEFAULT_SEED;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new InvalidVmSpecError('seed', `seed must be an integer in 0..4294967295, got ${seed}`);
  }
  const fillRatio = spec.fillRatio ?? DEFAULT_FILL_RATIO;
  if (typeof fillRatio !== 'number' || !(fillRatio >= 0 && fillRatio <= 1)) {
    throw new InvalidVmSpecError('fillRatio', `fillRatio must be a number in 0..1, got ${fillRatio}`);
  }
  const driver = resolveDriver(spec.driver, spec.memoryBytes);
  return { vmId, memoryBytes: spec.memoryBytes, pageCount, workload, seed, fillRatio, driver };
}

/**
 * Checks the guest image key a destination is asked to start (the source's; infra/qemu
 * guest-image.ts): absent, or 16 lowercase hex digits for a QEMU guest. Throws InvalidVmSpecError
 * naming `guestImageKey`.
 */
export function validateGuestImageKey(key: unknown, driver: VmDriverName): string | undefined {
  if (key === undefined) return undefined;
  if (driver !== 'qemu')
    throw new InvalidVmSpecError('guestImageKey', `a guest image key is for QEMU guests only, not ${driver}`);
  if (typeof key !== 'string' || !/^[0-9a-f]{16}$/.test(key))
    throw new InvalidVmSpecError(
      'guestImageKey',
      `guestImageKey must be 16 lowercase hex digits, got ${JSON.stringify(key)}`,
    );
  return key;
}

/**
 * Checks a driver name (default `simulated`) and that `memoryBytes` suits it. Throws
 * InvalidVmSpecError: "driver must be one of simulated, qemu, got \"xen\"".
 */
export function resolveDriver(driver: unknown, memoryBytes: number): VmDriverName {
  const name = driver ?? 'simulated';
  if (!VM_DRIVERS.includes(name as VmDriverName))
    throw new InvalidVmSpecError(
      'driver',
      `driver must be one of ${VM_DRIVERS.join(', ')}, got ${JSON.stringify(driver)}`,
    );
  if (
    name === 'qemu' &&
    (memoryBytes % (1024 * 1024) !== 0 || memoryBytes < MIN_QEMU_MEMORY_BYTES || memoryBytes > MAX_QEMU_MEMORY_BYTES)
  )
    throw new InvalidVmSpecError(
      'memoryBytes',
      `a QEMU guest's memoryBytes must be a multiple of 1 MiB from 64 MiB to 4 GiB, got ${memoryBytes}`,
    );
  return name as VmDriverName;
}
