/**
 * Builds, on demand, the boot image of ferry's QEMU test guest and caches it under
 * `<repo>/.ferry/guest/<key>/`: the kernel (`vmlinuz`, from Debian's linux-image-amd64) and an
 * initramfs (`initrd.cpio`: busybox-static, an /init script and the guest program guest/memwriter.c
 * compiled with `gcc -static -O2`). The key hashes the exact package versions, the guest program's
 * source, the /init script and gcc's version, so a change to any rebuilds and an unchanged host
 * reuses the image without touching the network.
 *
 * Idempotent and safe to race: an image is built in a private temporary folder and renamed into
 * place; the loser of a race drops its copy and uses the winner's.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../temporal-config/environment';
import {
  candidateVersions,
  downloadPackage,
  extractDebMembers,
  kernelPackageName,
  type DebianPackage,
} from './debian-packages';
import { GuestImageError } from './errors';
import { encodeNewcArchive, type NewcEntry } from './newc-archive';

const execFileAsync = promisify(execFile);

/** Bumped when the image's layout changes in a way the other inputs of the key do not show. */
const GUEST_IMAGE_FORMAT = 1;

/** Default size of the memory the guest program fills, in MiB (fits a 128 MiB guest). */
export const DEFAULT_GUEST_FILL_MIB = 48;
/** Default size of the hot set the guest program keeps rewriting, in MiB (the first part of the fill). */
export const DEFAULT_GUEST_HOT_MIB = 16;
/** Default rate at which the hot set is rewritten, in MB/s (10^6 bytes). */
export const DEFAULT_GUEST_RATE_MB_PER_SEC = 50;
/** Default rate at which the guest program re-verifies its whole buffer, in MB/s. */
export const DEFAULT_GUEST_VERIFY_MB_PER_SEC = 64;

/**
 * The /init of the initramfs: reads `ferry.*` parameters from the kernel command line, turns the
 * kernel's console messages down so they do not interleave with heartbeats, runs the guest program
 * and powers the guest off when it exits (QEMU then exits too).
 */
const INIT_SCRIPT = `#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
fill=${DEFAULT_GUEST_FILL_MIB}; hot=${DEFAULT_GUEST_HOT_MIB}; rate=${DEFAULT_GUEST_RATE_MB_PER_SEC}; verify=${DEFAULT_GUEST_VERIFY_MB_PER_SEC}
for arg in $($bb cat /proc/cmdline); do
  case "$arg" in
    ferry.fill_mib=*) fill="\${arg#*=}" ;;
    ferry.hot_mib=*) hot="\${arg#*=}" ;;
    ferry.rate_mbps=*) rate="\${arg#*=}" ;;
    ferry.verify_mbps=*) verify="\${arg#*=}" ;;
  esac
done
echo 1 > /proc/sys/kernel/printk
/bin/memwriter "$fill" "$hot" "$rate" "$verify"
echo "ferry-memwriter exit status=$?"
$bb poweroff -f
`;

/** What the guest program does; every field optional (see the DEFAULT_GUEST_* constants). */
export interface GuestWorkloadOptions {
  /** MiB filled with random data at start. */
  fillMib?: number;
  /** MiB of the fill that are rewritten continuously (0 = idle guest). */
  hotMib?: number;
  /** Rewrite rate of the hot set, MB/s. */
  rateMbPerSec?: number;
  /** Rate of the guest's own re-verification of its buffer, MB/s. */
  verifyMbPerSec?: number;
}

/**
 * The most memory, in MiB, the guest program can fill in a guest of `memoryMib` MiB without being
 * killed for lack of memory: 7/8 of it less 64 MiB, which leaves the Debian kernel its ~60 MiB and
 * its per-page tables (48 of 128 MiB and 864 of 1024 MiB ran; 64 of 128 and 900 of 1024 were killed).
 * 0 when the guest is too small for any.
 */
export function maxGuestFillMib(memoryMib: number): number {
  return Math.max(0, Math.floor((memoryMib * 7) / 8) - 64);
}

/**
 * The kernel command line that boots the guest image with `workload`: serial console on ttyS0, an
 * immediate reboot on panic (QEMU started with `-no-reboot` then exits) and the workload's
 * `ferry.*` parameters, which /init hands to the guest program.
 * Throws when a value is not a non-negative integer or the hot set exceeds the fill.
 */
export function guestKernelCommandLine(workload: GuestWorkloadOptions = {}): string {
  const fill = workload.fillMib ?? DEFAULT_GUEST_FILL_MIB;
  const hot = workload.hotMib ?? DEFAULT_GUEST_HOT_MIB;
  const rate = workload.rateMbPerSec ?? DEFAULT_GUEST_RATE_MB_PER_SEC;
  const verify = workload.verifyMbPerSec ?? DEFAULT_GUEST_VERIFY_MB_PER_SEC;
  for (const [name, value] of Object.entries({
    fillMib: fill,
    hotMib: hot,
    rateMbPerSec: rate,
    verifyMbPerSec: verify,
  }))
    if (!Number.isSafeInteger(value) || value < 0)
      throw new Error(`${name} must be a non-negative integer, got ${value}`);
  if (fill === 0 || verify === 0)
    throw new Error(`fillMib and verifyMbPerSec must be positive, got ${fill} and ${verify}`);
  if (hot > fill) throw new Error(`hotMib must not exceed fillMib, got ${hot} > ${fill}`);
  return [
    'console=ttyS0',
    'panic=-1',
    'loglevel=4',
    `ferry.fill_mib=${fill}`,
    `ferry.hot_mib=${hot}`,
    `ferry.rate_mbps=${rate}`,
    `ferry.verify_mbps=${verify}`,
  ].join(' ');
}

/** Where the cache lives and what the guest program is; every field optional. */
export interface GuestImageOptions {
  /** Cache folder; default `<repo>/.ferry/guest`. */
  cacheDir?: string;
  /** Source of the guest program; default `<repo>/guest/memwriter.c`. */
  memwriterSource?: string;
}

/** A built guest image. */
export interface GuestImage {
  /** The kernel to pass to `qemu -kernel`. */
  kernelPath: string;
  /** The initramfs to pass to `qemu -initrd`. */
  initrdPath: string;
  /** The cache key (hex), also the name of the image's folder. */
  key: string;
  /** The versioned kernel package the kernel came from. */
  kernel: DebianPackage;
  /** The busybox-static package. */
  busybox: DebianPackage;
}

interface ImageInputs {
  kernel: DebianPackage;
  busybox: DebianPackage;
  memwriter: Buffer;
  gccVersion: string;
}

function imageKey(inputs: ImageInputs): string {
  return createHash('sha256')
    .update(
      JSON.stringify({
        format: GUEST_IMAGE_FORMAT,
        kernel: inputs.kernel,
        busybox: inputs.busybox,
        memwriter: createHash('sha256').update(inputs.memwriter).digest('hex'),
        init: INIT_SCRIPT,
        gcc: inputs.gccVersion,
      }),
    )
    .digest('hex')
    .slice(0, 16);
}

async function gccVersion(): Promise<string> {
  try {
    return (await execFileAsync('gcc', ['-dumpfullversion'])).stdout.trim();
  } catch (error) {
    throw new GuestImageError('gcc -dumpfullversion', 'gcc not found; run infra/qemu/setup-qemu.sh', { cause: error });
  }
}

async function compileMemwriter(source: string, output: string): Promise<void> {
  try {
    await execFileAsync('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-o', output, source]);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new GuestImageError('gcc -static -O2 memwriter.c', stderr || (error as Error).message, { cause: error });
  }
}

function initramfsEntries(busybox: Buffer, memwriter: Buffer): NewcEntry[] {
  return [
    { type: 'dir', path: 'bin' },
    { type: 'dir', path: 'dev' },
    // The kernel opens /dev/console for init's stdin/stdout before any devtmpfs is mounted.
    { type: 'char-device', path: 'dev/console', major: 5, minor: 1 },
    { type: 'dir', path: 'proc' },
    { type: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'bin/memwriter', data: memwriter, mode: 0o755 },
    { type: 'file', path: 'init', data: Buffer.from(INIT_SCRIPT), mode: 0o755 },
  ];
}

async function buildInto(dir: string, inputs: ImageInputs, memwriterSource: string): Promise<void> {
  const work = path.join(dir, 'work');
  fs.mkdirSync(work);
  const [kernelDeb, busyboxDeb] = [
    await downloadPackage(inputs.kernel, work),
    await downloadPackage(inputs.busybox, work),
  ];
  // Only the kernel image: the package's modules are ~400 MB unpacked and the guest needs none.
  await extractDebMembers(kernelDeb, work, ['./boot/vmlinuz-*']);
  await extractDebMembers(busyboxDeb, work, ['./bin/busybox']);
  const vmlinuz = fs.readdirSync(path.join(work, 'boot')).find((f) => f.startsWith('vmlinuz-'));
  if (vmlinuz === undefined) throw new GuestImageError('unpack kernel', `no boot/vmlinuz-* in ${kernelDeb}`);
  fs.renameSync(path.join(work, 'boot', vmlinuz), path.join(dir, 'vmlinuz'));
  const memwriterBinary = path.join(work, 'memwriter');
  await compileMemwriter(memwriterSource, memwriterBinary);
  const initrd = encodeNewcArchive(
    initramfsEntries(fs.readFileSync(path.join(work, 'bin', 'busybox')), fs.readFileSync(memwriterBinary)),
  );
  fs.writeFileSync(path.join(dir, 'initrd.cpio'), initrd);
  fs.rmSync(work, { recursive: true, force: true });
  fs.writeFileSync(
    path.join(dir, 'image.json'),
    `${JSON.stringify({ kernel: inputs.kernel, busybox: inputs.busybox, gcc: inputs.gccVersion }, null, 2)}\n`,
  );
}

/** What a guest image's key looks like (imageKey): 16 hex digits. */
const IMAGE_KEY_PATTERN = /^[0-9a-f]{16}$/;

/**
 * The image of key `key` if this host's cache holds it, found without asking apt: a destination
 * starts the image its source VM runs. Undefined when the cache has no such image, or `key` is
 * not an image key (it names a folder, so nothing else is looked up).
 */
export function cachedGuestImage(
  key: string,
  options: Pick<GuestImageOptions, 'cacheDir'> = {},
): GuestImage | undefined {
  if (!IMAGE_KEY_PATTERN.test(key)) return undefined;
  const dir = path.join(path.resolve(options.cacheDir ?? path.join(projectRoot(), '.ferry', 'guest')), key);
  try {
    const recorded = JSON.parse(fs.readFileSync(path.join(dir, 'image.json'), 'utf8')) as Partial<GuestImage>;
    if (!isPackage(recorded.kernel) || !isPackage(recorded.busybox)) return undefined;
    const image: GuestImage = {
      kernelPath: path.join(dir, 'vmlinuz'),
      initrdPath: path.join(dir, 'initrd.cpio'),
      key,
      kernel: recorded.kernel,
      busybox: recorded.busybox,
    };
    return fs.existsSync(image.kernelPath) && fs.existsSync(image.initrdPath) ? image : undefined;
  } catch {
    return undefined;
  }
}

function isPackage(value: unknown): value is DebianPackage {
  const p = value as Partial<DebianPackage> | null | undefined;
  return typeof p?.name === 'string' && typeof p.version === 'string';
}

/**
 * The guest image for this host's package versions and guest program, built when not cached.
 * A cold build downloads ~72 MB of packages. Throws GuestImageError naming the failed step (most
 * often: package lists or gcc missing, fixed by running infra/qemu/setup-qemu.sh).
 */
export async function buildGuestImage(options: GuestImageOptions = {}): Promise<GuestImage> {
  const root = projectRoot();
  const cacheDir = path.resolve(options.cacheDir ?? path.join(root, '.ferry', 'guest'));
  const memwriterSource = path.resolve(options.memwriterSource ?? path.join(root, 'guest', 'memwriter.c'));
  // Asking apt is most of what checking a cached image costs: two calls, with gcc asked meanwhile.
  const [kernelName, gcc] = await Promise.all([kernelPackageName(), gccVersion()]);
  const [kernel, busybox] = (await candidateVersions([kernelName, 'busybox-static'])) as [DebianPackage, DebianPackage];
  const inputs: ImageInputs = { kernel, busybox, memwriter: fs.readFileSync(memwriterSource), gccVersion: gcc };
  const key = imageKey(inputs);
  const finalDir = path.join(cacheDir, key);
  const image: GuestImage = {
    kernelPath: path.join(finalDir, 'vmlinuz'),
    initrdPath: path.join(finalDir, 'initrd.cpio'),
    key,
    kernel: inputs.kernel,
    busybox: inputs.busybox,
  };
  if (fs.existsSync(path.join(finalDir, 'image.json'))) return image;

  fs.mkdirSync(cacheDir, { recursive: true });
  const tmpDir = path.join(cacheDir, `.build-${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(tmpDir);
  try {
    await buildInto(tmpDir, inputs, memwriterSource);
    try {
      fs.renameSync(tmpDir, finalDir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
  return image;
}
