/**
 * vmm/qemu: the pieces of ferry's QEMU driver. A QMP client, one QEMU process per guest (RAM in a
 * shared-memory file, console parsed into the guest program's heartbeats) and the device-state-only
 * handover (`x-ignore-shared`). The page engine and the driver port build on these.
 */
export {
  DEFAULT_DEVICE_STATE_TIMEOUT_MS,
  enableDeviceStateOnly,
  migrateDeviceState,
  startIncoming,
  waitForMigrationEnd,
  type DeviceStateMigration,
} from './device-state';
export {
  QemuProcessError,
  QemuThrottleError,
  QemuTimeoutError,
  QmpCommandError,
  QmpConnectionError,
  type QemuProcessFailure,
} from './errors';
export { DEFAULT_WAIT_TIMEOUT_MS, EventChannel, type WaitOptions } from './event-channel';
export { parseGuestConsoleLine, type GuestConsoleMessage, type GuestHeartbeat } from './guest-console';
export {
  DEFAULT_QEMU_BINARY,
  DEFAULT_QEMU_START_TIMEOUT_MS,
  DEFAULT_QEMU_STOP_GRACE_MS,
  QemuProcess,
  type QemuExit,
} from './qemu-process';
export { qemuArgs, type QemuAccel, type QemuProcessOptions } from './qemu-command-line';
export { createRamFile, defaultShmDir } from './ram-file';
export { DEFAULT_QMP_CONNECT_TIMEOUT_MS, QmpClient, type QmpEvent, type QmpVersion } from './qmp-client';
export {
  cpuCgroupWritable,
  DEFAULT_CFS_PERIOD_US,
  DEFAULT_CPU_CGROUP_ROOT,
  memwriterArgs,
  QemuVcpu,
  THROTTLE_SLICE_PERIOD_MS,
  vcpuThreadIds,
  type QemuThrottleMeans,
  type QemuVcpuOptions,
} from './qemu-vcpu';
