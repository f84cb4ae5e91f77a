/**
 * infra/qemu: brings a host to running ferry's QEMU guests: installs QEMU (setup-qemu.sh) and
 * builds the guest image (kernel, initramfs with busybox and guest/memwriter.c) on demand.
 */
export {
  buildGuestImage,
  cachedGuestImage,
  DEFAULT_GUEST_FILL_MIB,
  DEFAULT_GUEST_HOT_MIB,
  DEFAULT_GUEST_RATE_MB_PER_SEC,
  DEFAULT_GUEST_VERIFY_MB_PER_SEC,
  guestKernelCommandLine,
  maxGuestFillMib,
  type GuestImage,
  type GuestImageOptions,
  type GuestWorkloadOptions,
} from './guest-image';
export { GuestImageError, QemuSetupError } from './errors';
export { encodeNewcArchive, type NewcEntry } from './newc-archive';
export { prepareQemuHost, qemuSetupFailureSync, runQemuSetup, type QemuHost } from './setup';
