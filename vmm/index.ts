/**
 * The simulated VMM: guest memory with self-checking pages and a dirty log, a vCPU thread with a
 * throttle, the VMM process and its control channel, and the hypervisor driver host agents use.
 */
export { SimulatedDriver, DEFAULT_DESTROY_GRACE_MS, resolveSimulatedDriverOptions } from './driver';
export type { HypervisorDriver, ResolvedSimulatedDriverOptions, SimulatedDriverOptions } from './driver';
export {
  InvalidSizeError,
  InvalidVmSpecError,
  SocketInUseError,
  VcpuStoppedError,
  VmExistsError,
  VmNotFoundError,
  VmmCallError,
  VmmConnectError,
  VmmLaunchError,
  VmmMethodNotFoundError,
  VmmNotOwnerError,
  VmmParamsError,
} from './errors';
export type { VmmContext, VmmHandler } from './extensions';
export { GuestRun } from './guest-run';
export type { GuestHold } from './guest-run';
export { GuestMemory, PAGE_HEADER_BYTES, PAGE_SIZE_BYTES } from './guest-memory';
export type { GuestMemoryShared } from './guest-memory';
export { DEFAULT_LAUNCH_TIMEOUT_MS, VMM_PROCESS_SCRIPT, launchVmm } from './launch';
export type { LaunchVmmOptions } from './launch';
export { DEFAULT_FILL_THREADS, fillPages } from './memory-fill';
export type { FillPagesOptions } from './memory-fill';
export { formatSize, parseSize } from './size';
export { VCPU_STOP_GRACE_MS, Vcpu } from './vcpu';
export type { VcpuStartOptions, VcpuStats } from './vcpu';
export {
  DEFAULT_FILL_RATIO,
  DEFAULT_SEED,
  MAX_MEMORY_BYTES,
  pageCountOf,
  resolveVmSpec,
  validateVmId,
} from './vm-spec';
export type { ResolvedVmSpec, VmSpec } from './vm-spec';
export { isVmmAlive, waitForVmmExit } from './vm-records';
export type { VmRecord } from './vm-records';
export type { VmmMode, VmmProcessOptions } from './vmm-args';
export { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS, VmmClient } from './vmm-client';
export type { VmmClientOptions } from './vmm-client';
export { BUILTIN_METHODS } from './vmm-methods';
export type { VmmStatus, VmmVerifyResult } from './vmm-methods';
export {
  DEFAULT_WORKLOAD,
  createPageChooser,
  createXorshift32,
  hotSetPages,
  resolveWorkload,
  workloadPagesPerMs,
} from './workload';
export type { Workload } from './workload';
