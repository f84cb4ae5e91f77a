/**
 * The VMM process command line, both ways: `formatVmmArgs` (used by launch) and `parseVmmArgs`
 * (used by the process), so the two cannot drift apart.
 *
 *   --vm-id <id> --pages <n> --socket <path> --mode run|incoming
 *   [--workload <json>] [--seed <n>] [--fill-ratio <0..1>] [--driver simulated|qemu]
 *   [--kernel <path> --initrd <path>]   (a QEMU guest's image, when the host built it already)
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { VmmParamsError } from './errors';
import { PAGE_SIZE_BYTES } from './guest-memory';
import { DEFAULT_FILL_RATIO, DEFAULT_SEED, resolveVmSpec, type VmDriverName } from './vm-spec';
import { DEFAULT_WORKLOAD } from './workload';
import type { Workload } from './workload';

/** How a VMM starts: `run` fills memory and runs the guest; `incoming` waits, paused, for a migration. */
export type VmmMode = 'run' | 'incoming';

/** Everything a VMM process is started with; see the module comment for the flags. */
export interface VmmProcessOptions {
  vmId: string;
  pageCount: number;
  socketPath: string;
  mode: VmmMode;
  workload: Workload;
  seed: number;
  fillRatio: number;
  driver: VmDriverName;
  /** A QEMU guest's kernel and initramfs, built by the host; absent, the VMM builds (or finds) them. */
  guestImage?: { kernelPath: string; initrdPath: string };
}

/** The command-line arguments (after the script path) that start a VMM with `opts`. */
export function formatVmmArgs(opts: VmmProcessOptions): string[] {
  return [
    '--vm-id',
    opts.vmId,
    '--pages',
    String(opts.pageCount),
    '--socket',
    opts.socketPath,
    '--mode',
    opts.mode,
    '--workload',
    JSON.stringify(opts.workload),
    '--seed',
    String(opts.seed),
    '--fill-ratio',
    String(opts.fillRatio),
    ...(opts.driver === 'simulated' ? [] : ['--driver', opts.driver]),
    ...(opts.guestImage ? ['--kernel', opts.guestImage.kernelPath, '--initrd', opts.guestImage.initrdPath] : []),
  ];
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new VmmParamsError(flag, `${flag} is required`);
  return value;
}

/**
 * Parses and validates the VMM command line. Throws VmmParamsError for a missing, unknown or
 * malformed flag, InvalidVmSpecError for a bad id, page count, workload, seed or fill ratio.
 */
export function parseVmmArgs(argv: readonly string[]): VmmProcessOptions {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({
      args: [...argv],
      options: {
        'vm-id': { type: 'string' },
        pages: { type: 'string' },
        socket: { type: 'string' },
        mode: { type: 'string' },
        workload: { type: 'string' },
        seed: { type: 'string' },
        'fill-ratio': { type: 'string' },
        driver: { type: 'string' },
        kernel: { type: 'string' },
        initrd: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new VmmParamsError('argv', `bad VMM command line: ${(err as Error).message}`);
  }
  const mode = required(values['mode'], '--mode');
  if (mode !== 'run' && mode !== 'incoming') {
    throw new VmmParamsError('--mode', `--mode must be run or incoming, got ${JSON.stringify(mode)}`);
  }
  const pagesText = required(values['pages'], '--pages');
  if (!/^[1-9]\d*$/.test(pagesText)) {
    throw new VmmParamsError('--pages', `--pages must be a positive integer, got ${JSON.stringify(pagesText)}`);
  }
  let workload: unknown = DEFAULT_WORKLOAD;
  if (values['workload'] !== undefined) {
    try {
      workload = JSON.parse(values['workload']);
    } catch (err) {
      throw new VmmParamsError(
        '--workload',
        `--workload must be JSON, got ${values['workload']}: ${(err as Error).message}`,
      );
    }
  }
  const spec = resolveVmSpec({
    vmId: required(values['vm-id'], '--vm-id'),
    memoryBytes: Number(pagesText) * PAGE_SIZE_BYTES,
    workload: workload as Workload,
    seed: values['seed'] === undefined ? DEFAULT_SEED : Number(values['seed']),
    fillRatio: values['fill-ratio'] === undefined ? DEFAULT_FILL_RATIO : Number(values['fill-ratio']),
    ...(values['driver'] === undefined ? {} : { driver: values['driver'] as VmDriverName }),
  });
  return {
    vmId: spec.vmId,
    pageCount: spec.pageCount,
    socketPath: required(values['socket'], '--socket'),
    mode,
    workload: spec.workload,
    seed: spec.seed,
    fillRatio: spec.fillRatio,
    driver: spec.driver,
    ...guestImageArgs(values['kernel'], values['initrd']),
  };
}

/** `--kernel` and `--initrd`, both or neither, absolute paths. */
function guestImageArgs(
  kernelPath: string | undefined,
  initrdPath: string | undefined,
): Pick<VmmProcessOptions, 'guestImage'> {
  if (kernelPath === undefined && initrdPath === undefined) return {};
  if (kernelPath === undefined || initrdPath === undefined)
    throw new VmmParamsError('--kernel', '--kernel and --initrd go together');
  for (const [flag, value] of [
    ['--kernel', kernelPath],
    ['--initrd', initrdPath],
  ] as const)
    if (!path.isAbsolute(value))
      throw new VmmParamsError(flag, `${flag} must be an absolute path, got ${JSON.stringify(value)}`);
  return { guestImage: { kernelPath, initrdPath } };
}
