/**
 * A QEMU guest behind the guest port: what the VMM process runs instead of the simulated guest
 * when it is started with `--driver qemu`. It builds (or finds cached) the guest image, starts QEMU
 * with the guest's RAM in a private shared-memory file, and returns the three port objects the
 * migration engine works with: pages over the RAM file, the vCPU over QMP, device state over QEMU's
 * own device-state-only migration.
 *
 * A source (`run`) boots the guest program with the VM's workload and waits for its first
 * heartbeat, so a created VM is a running guest. A destination (`incoming`) starts paused and
 * waiting (`-incoming defer -S`); the engine fills its RAM file, loads its device state, and lets
 * it run once it owns the VM.
 *
 * Nothing outlives the VMM process: QEMU dies with it (qemu-process.ts), the RAM file's name is
 * removed as soon as both QEMU and the engine hold it open (its memory goes when they do), and the
 * small state folders (sockets, console log) of VMMs that were killed are swept at the next start.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { buildGuestImage, guestKernelCommandLine, maxGuestFillMib } from '../../infra/qemu';
import { PAGE_SIZE_BYTES } from '../guest-memory';
import type { Workload } from '../workload';
import { QemuDevices } from './qemu-devices';
import { QemuGuestPages } from './qemu-guest-pages';
import { QemuProcess } from './qemu-process';
import type { QemuAccel } from './qemu-command-line';
import { memwriterArgs, QemuVcpu } from './qemu-vcpu';

/** How long a booting guest may take to print its first heartbeat (ms); TCG boots in 5-9 s here. */
export const DEFAULT_QEMU_BOOT_TIMEOUT_MS = 90_000;

/** Where QEMU state folders go: short paths, since their sockets must fit in 107 bytes. */
const STATE_DIR_PARENT = '/tmp';
const STATE_DIR_PREFIX = 'ferry-qemu-';

/**
 * Removes this user's QEMU state folders under `parent` whose QEMU is gone (its pid file names a
 * process that no longer runs). A folder without a pid file may be one starting now: it stays.
 */
export function sweepStateDirs(parent: string): void {
  const uid = process.getuid?.();
  for (const name of readdirSync(parent)) {
    if (!name.startsWith(STATE_DIR_PREFIX)) continue;
    const dir = path.join(parent, name);
    try {
      if (uid !== undefined && statSync(dir).uid !== uid) continue;
      const pidFile = path.join(dir, 'qemu.pid');
      if (!existsSync(pidFile)) continue;
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (Number.isSafeInteger(pid) && pid > 0 && existsSync(`/proc/${pid}`)) continue;
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Gone meanwhile, or not ours to read: leave it.
    }
  }
}

/** The environment variable that picks QEMU's accelerator on a host (its agent passes it on). */
export const QEMU_ACCEL_ENV = 'FERRY_QEMU_ACCEL';

/**
 * The accelerator named by FERRY_QEMU_ACCEL: `tcg` (the default; emulation, works everywhere) or
 * `kvm` (a host whose /dev/kvm works). Throws for any other value.
 */
export function qemuAccelFromEnv(env: NodeJS.ProcessEnv = process.env): QemuAccel {
  const value = env[QEMU_ACCEL_ENV] ?? 'tcg';
  if (value !== 'tcg' && value !== 'kvm')
    throw new Error(`${QEMU_ACCEL_ENV} must be tcg or kvm, got ${JSON.stringify(value)}`);
  return value;
}

/** What a QEMU guest is started with. */
export interface QemuGuestOptions {
  vmId: string;
  pageCount: number;
  mode: 'run' | 'incoming';
  workload: Workload;
  /** Share (0..1) of the guest program's largest fill that it fills at boot. */
  fillRatio: number;
  /** The guest's kernel and initramfs, when the host built them already; else built (or found cached) here. */
  guestImage?: { kernelPath: string; initrdPath: string };
  log(msg: string): void;
}

/** A started QEMU guest: its port objects, and how to end it. */
export interface QemuGuest {
  qemu: QemuProcess;
  memory: QemuGuestPages;
  vcpu: QemuVcpu;
  devices: QemuDevices;
  /** Kills QEMU and removes its RAM file and state folder. */
  destroy(): Promise<void>;
}

/** Starts a QEMU guest; see the module comment. Throws (leaving nothing behind) when QEMU does not come up. */
export async function startQemuGuest(options: QemuGuestOptions): Promise<QemuGuest> {
  const memoryBytes = options.pageCount * PAGE_SIZE_BYTES;
  const memoryMib = memoryBytes / (1024 * 1024);
  const fillMib = Math.max(1, Math.floor(maxGuestFillMib(memoryMib) * options.fillRatio));
  const args = memwriterArgs(options.workload, fillMib);
  const accel = qemuAccelFromEnv();
  // Checking a cached image asks apt for package versions (~1.5 s): the host does it once, not every VMM.
  const image = options.guestImage ?? (await buildGuestImage());
  // Short: QMP and device-state sockets live here (unix socket paths are limited to 107 bytes).
  sweepStateDirs(STATE_DIR_PARENT);
  const stateDir = mkdtempSync(path.join(STATE_DIR_PARENT, `${STATE_DIR_PREFIX}${options.vmId.slice(0, 32)}-`));
  let qemu: QemuProcess | undefined;
  let memory: QemuGuestPages | undefined;
  try {
    qemu = await QemuProcess.launch({
      vmId: options.vmId,
      stateDir,
      memoryMib,
      kernelPath: image.kernelPath,
      initrdPath: image.initrdPath,
      kernelCommandLine: guestKernelCommandLine(args),
      incoming: options.mode === 'incoming',
      accel,
    });
    options.log(`QEMU pid ${qemu.pid}, RAM ${qemu.ramPath}, guest program ${JSON.stringify(args)}`);
    memory = new QemuGuestPages(qemu.ramPath, options.pageCount);
    options.log(
      memory.ramAccess === 'mapped'
        ? 'RAM file mapped into the VMM'
        : `RAM file read and written with read(2)/write(2): ${memory.ramAccessNote ?? 'mapping not asked for'}`,
    );
    // QEMU maps the file (it answers QMP only after) and the engine holds it open: the name can go.
    rmSync(qemu.ramPath, { force: true });
    if (options.mode === 'incoming') {
      const started = performance.now();
      memory.prefault();
      options.log(`pre-allocated ${options.pageCount} pages in ${(performance.now() - started).toFixed(0)} ms`);
    }
    const devices = new QemuDevices(qemu.qmp, stateDir);
    await devices.enable();
    if (options.mode === 'run') {
      const first = await qemu.waitForHeartbeat(undefined, { timeoutMs: DEFAULT_QEMU_BOOT_TIMEOUT_MS });
      options.log(`guest program running: heartbeat ${first.seq}, state ${first.state}`);
    }
    const incoming = options.mode === 'incoming';
    const vcpu = new QemuVcpu(qemu, { workload: options.workload, paused: incoming, incoming });
    const started = qemu;
    const pages = memory;
    return {
      qemu: started,
      memory: pages,
      vcpu,
      devices,
      destroy: async () => {
        await vcpu.stop().catch(() => undefined);
        pages.close();
        await started.destroy();
        rmSync(stateDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    memory?.close();
    await qemu?.destroy().catch(() => undefined);
    rmSync(stateDir, { recursive: true, force: true });
    throw err;
  }
}
