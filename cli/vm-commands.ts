/** `ferry vm create | list | destroy`. */
import { DEFAULT_HOSTS } from '../temporal-config';
import { validateId } from '../model';
import { parseSize } from '../vmm/size';
import type { Workload } from '../vmm/vcpu';
import { VM_DRIVERS, type VmDriverName } from '../vmm/vm-spec';
import { numberOrText, type VmCreateFlags, type VmHostsFlags, type WorkloadFlags } from './args';
import { usageError } from './errors';
import type { FerryClient } from './ferry-client';
import { formatBytes, formatRate } from './progress-view';

/** Default guest size of `vm create`. */
export const DEFAULT_VM_MEMORY = '256MiB';

/**
 * Parses a rate into bytes per second. Rates are quoted in decimal units as networks quote them
 * (`50MB/s` = 50,000,000 B/s, `1GB/s`); binary units (`20MiB/s`) and plain bytes are taken as such.
 */
export function parseRate(raw: string): number {
  const perSecond = raw.trim().replace(/\/s$/i, '');
  const decimal = /^(\d+(?:\.\d+)?)\s*([kmg])b?$/i.exec(perSecond);
  if (decimal) {
    const scale = { k: 1e3, m: 1e6, g: 1e9 }[(decimal[2] as string).toLowerCase() as 'k' | 'm' | 'g'];
    return Math.round(Number(decimal[1]) * scale);
  }
  return parseSize(perSecond);
}

/** Builds a workload from `--workload`, `--rate` and `--hot-set`. */
export function workloadFromFlags(flags: WorkloadFlags): Workload {
  const type = flags.workload ?? 'idle';
  const rate = (): number => {
    const raw = flags.rate ?? '20MB/s';
    try {
      return parseRate(raw);
    } catch {
      throw usageError(`--rate must be a rate such as 50MB/s or 20MiB/s, got ${JSON.stringify(raw)}`);
    }
  };
  switch (type) {
    case 'idle':
      return { type: 'idle' };
    case 'random':
      return { type: 'random', rateBytesPerSec: rate() };
    case 'sweep':
      return { type: 'sweep', rateBytesPerSec: rate() };
    case 'hotset':
      return { type: 'hotset', rateBytesPerSec: rate(), hotSetBytes: parseSize(flags.hotSet ?? '16MiB') };
    default:
      throw usageError(`--workload must be idle, random, hotset or sweep, got ${JSON.stringify(type)}`);
  }
}

/** The hypervisor named by `--driver` (default simulated). */
export function driverFromFlag(raw: string | undefined): VmDriverName {
  const name = raw ?? 'simulated';
  if (!VM_DRIVERS.includes(name as VmDriverName))
    throw usageError(`--driver must be one of ${VM_DRIVERS.join(', ')}, got ${JSON.stringify(name)}`);
  return name as VmDriverName;
}

/** Hosts named by `--hosts a,b` (each a well-formed host id), or the embedded default. */
export function hostsFromFlag(raw: string | undefined): string[] {
  if (!raw) return [...DEFAULT_HOSTS];
  return raw
    .split(',')
    .filter((h) => h !== '')
    .map((h) => validateId('hostId', h, '--hosts entry'));
}

function describeWorkload(w: Workload): string {
  if (w.type === 'idle') return 'idle';
  if (w.type === 'hotset') return `hotset ${formatBytes(w.hotSetBytes)} @ ${formatRate(w.rateBytesPerSec)}`;
  return `${w.type} @ ${formatRate(w.rateBytesPerSec)}`;
}

/** `ferry vm create <vm> [--host h] [--memory size] [workload flags] [--seed n] [--json]`; ids checked by args.ts. */
export async function vmCreateCommand(
  client: FerryClient,
  vmId: string,
  flags: VmCreateFlags,
  out: (line: string) => void,
): Promise<void> {
  const host = flags.host;
  const memoryBytes = parseSize(flags.memory);
  const workload = workloadFromFlags(flags);
  const seed = flags.seed === undefined ? undefined : numberOrText(flags.seed);
  if (typeof seed === 'string') throw usageError(`--seed must be a number, got ${JSON.stringify(seed)}`);
  const driver = driverFromFlag(flags.driver);
  await client.requireHost(host);
  const vm = await client.createVm(host, {
    vmId,
    memoryBytes,
    workload,
    ...(seed !== undefined ? { seed } : {}),
    ...(driver !== 'simulated' ? { driver } : {}),
  });
  out(
    flags.json === true
      ? JSON.stringify(vm)
      : `created VM ${vm.vmId} on ${host}: ${vm.driver ?? 'simulated'}, ${formatBytes(vm.memoryBytes)}, ${describeWorkload(vm.workload)}, pid ${vm.pid}`,
  );
}

/** `ferry vm list [--hosts h1,h2] [--json]`. */
export async function vmListCommand(
  client: FerryClient,
  flags: VmHostsFlags,
  out: (line: string) => void,
): Promise<void> {
  const hosts = hostsFromFlag(flags.hosts);
  const served: string[] = [];
  for (const h of hosts) if (await client.hostIsServed(h)) served.push(h);
  const listing = await client.listVms(served);
  if (flags.json === true) {
    out(JSON.stringify(listing));
    return;
  }
  out('HOST  VM                    DRIVER     MEMORY      STATE     WORKLOAD');
  for (const { hostId, vms } of listing) {
    for (const vm of vms) {
      out(
        `${hostId.padEnd(5)} ${vm.vmId.padEnd(21)} ${(vm.driver ?? 'simulated').padEnd(10)} ${formatBytes(vm.memoryBytes).padEnd(11)} ${(vm.mode === 'incoming' ? 'incoming' : vm.state).padEnd(9)} ${describeWorkload(vm.workload)}`,
      );
    }
  }
  for (const h of hosts.filter((x) => !served.includes(x))) out(`${h}: no host agent is serving this host`);
}

/** `ferry vm destroy <vm> [--host h]`. */
export async function vmDestroyCommand(
  client: FerryClient,
  vmId: string,
  flags: VmHostsFlags,
  out: (line: string) => void,
): Promise<void> {
  const host = flags.host ?? (await client.locateVm(vmId, hostsFromFlag(flags.hosts))).hostId;
  await client.destroyVm(host, vmId);
  out(`destroyed VM ${vmId} on ${host}`);
}
