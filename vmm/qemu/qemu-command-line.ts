/**
 * What one QEMU of ferry's QEMU driver is started with, and the command line that follows from it:
 * RAM in a shared file, TCG by default, no network card, no display, no default devices, the serial
 * console into a file and QMP on a unix socket in the caller's state dir. A destination waits with
 * `-incoming defer -S`.
 */
import * as path from 'node:path';

/** The accelerator: TCG (emulation, works everywhere) or KVM (a host with usable /dev/kvm). */
export type QemuAccel = 'tcg' | 'kvm';

/** What to run and where; see each field. */
export interface QemuProcessOptions {
  /** The VM's id (ferry's id pattern); names the RAM file and the QEMU process. */
  vmId: string;
  /** Folder for this QEMU's sockets, console log, QEMU log and pid file; created 0700. */
  stateDir: string;
  /** Guest RAM, MiB. */
  memoryMib: number;
  /** Kernel for `-kernel`. */
  kernelPath: string;
  /** Initramfs for `-initrd`. */
  initrdPath: string;
  /** Kernel command line for `-append` (see infra/qemu guestKernelCommandLine). */
  kernelCommandLine: string;
  /** Start as a migration destination: `-incoming defer -S`. Default false. */
  incoming?: boolean;
  /** Default `tcg`. */
  accel?: QemuAccel;
  /** Folder of RAM files; default `/dev/shm/ferry-<uid>`. Must be ours and mode 0700 if it exists. */
  shmDir?: string;
  /** Default `qemu-system-x86_64` on PATH. */
  qemuBinary?: string;
  /** How long launch() waits for QMP; default 15 s. */
  startTimeoutMs?: number;
}

/**
 * The QEMU command line for `options` with RAM in `ramPath` (exported for tests and docs). Throws
 * when a path holds a comma, which QEMU's option syntax would read as a separator.
 */
export function qemuArgs(options: QemuProcessOptions, ramPath: string): string[] {
  const dir = options.stateDir;
  for (const p of [dir, ramPath, options.kernelPath, options.initrdPath])
    if (p.includes(',')) throw new Error(`QEMU paths must not contain ',', got ${JSON.stringify(p)}`);
  const size = `${options.memoryMib}M`;
  const flags: Array<[string] | [string, string]> = [
    ['-name', `ferry-${options.vmId},debug-threads=on`],
    ['-accel', options.accel ?? 'tcg'],
    ['-machine', 'pc,memory-backend=ram0'],
    ['-m', size],
    ['-object', `memory-backend-file,id=ram0,size=${size},mem-path=${ramPath},share=on`],
    ['-smp', '1'],
    // Nothing but what is listed here: no default NIC, VGA, monitor, parallel port or config file.
    ['-nodefaults'],
    ['-no-user-config'],
    ['-display', 'none'],
    ['-vga', 'none'],
    ['-nic', 'none'],
    ['-no-reboot'],
    ['-chardev', `file,id=serial0,path=${path.join(dir, 'serial.log')}`],
    ['-serial', 'chardev:serial0'],
    ['-qmp', `unix:${path.join(dir, 'qmp.sock')},server=on,wait=off`],
    ['-pidfile', path.join(dir, 'qemu.pid')],
    ['-kernel', options.kernelPath],
    ['-initrd', options.initrdPath],
    ['-append', options.kernelCommandLine],
  ];
  if (options.incoming) flags.push(['-incoming', 'defer'], ['-S']);
  return flags.flat();
}
