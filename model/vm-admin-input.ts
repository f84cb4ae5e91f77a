/**
 * The inputs of the VM administration workflows (provisionVm, listVms, destroyVm, dumpVmMemory):
 * well-formed host and VM ids, unknown keys refused. What a VM is made of (memory, workload, seed)
 * is checked by the host that creates it (vmm/vm-spec.ts), the one place that knows.
 */
import { z } from 'zod';
import { checked } from './checks';
import { idSchema, isValidId } from './ids';

/** Input of `provisionVm`: the host, and the VM to create there. */
export interface ProvisionVmInput {
  hostId: string;
  vmId: string;
  memoryBytes: number;
  workload: unknown;
  seed?: number;
  driver?: unknown;
}

/** Input of `listVms`. */
export interface ListVmsInput {
  hostIds: string[];
}

/** Input of `destroyVm`. */
export interface DestroyVmInput {
  hostId: string;
  vmId: string;
}

/**
 * Input of `dumpVmMemory`: `path` is a file on that host. `at` is `now` (default: the memory as it
 * is, the guest held paused while it is written) or `resume` (a QEMU destination's memory as it
 * was when the guest first ran there, which the engine kept; see vmm/qemu/qemu-guest-pages.ts).
 */
export interface DumpVmMemoryInput {
  hostId: string;
  vmId: string;
  path: string;
  at?: 'now' | 'resume';
}

/** The schema of ProvisionVmInput; the VM's spec fields are checked by the host. */
export const provisionVmInputSchema = z
  .object({
    hostId: idSchema(),
    vmId: idSchema(),
    memoryBytes: z.unknown(),
    workload: z.unknown(),
    seed: z.unknown(),
    driver: z.unknown(),
  })
  .strict() as unknown as z.ZodType<ProvisionVmInput, z.ZodTypeDef, unknown>;

/** The schema of ListVmsInput. */
export const listVmsInputSchema = z
  .object({
    hostIds: checked(
      (v): v is string[] => Array.isArray(v) && v.every(isValidId),
      'a list of host ids (each 1-64 letters, digits, _ or -, starting with a letter or digit)',
    ),
  })
  .strict() as unknown as z.ZodType<ListVmsInput, z.ZodTypeDef, unknown>;

/** The schema of DestroyVmInput. */
export const destroyVmInputSchema = z.object({ hostId: idSchema(), vmId: idSchema() }).strict() as unknown as z.ZodType<
  DestroyVmInput,
  z.ZodTypeDef,
  unknown
>;

/** The schema of DumpVmMemoryInput. */
export const dumpVmMemoryInputSchema = z
  .object({
    hostId: idSchema(),
    vmId: idSchema(),
    path: checked((v): v is string => typeof v === 'string' && v !== '', 'a non-empty path'),
    at: z.enum(['now', 'resume']).optional(),
  })
  .strict() as unknown as z.ZodType<DumpVmMemoryInput, z.ZodTypeDef, unknown>;
