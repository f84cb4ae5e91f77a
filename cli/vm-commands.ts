/** `ferry vm create | list | destroy`. */
import { DEFAULT_HOSTS } from '../temporal-config';
import { parseSize } from '../vmm/size';
import type { Workload } from '../vmm/vcpu';
import { flag, has, numberFlag, type ParsedArgs } from './args';
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
export function workloadFromArgs(args: ParsedArgs): Workload {
  const type = flag(args, 'workload', 'idle') as string;
  const rate = (): number => {
    const raw = flag(args, 'rate', '20MB/s') as string;
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
      return {
        type: 'hotset',
        rateBytesPerSec: rate(),
        hotSetBytes: parseSize(flag(args, 'hot-set', '16MiB') as string),
      };
    default:
      throw usageError(`--workload must be idle, random, hotset or sweep, got ${JSON.stringify(type)}`);
  }
}

/** Hosts named by `--hosts a,b` or the embedded default. */
export function hostsFromArgs(args: ParsedArgs): string[] {
  const raw = flag(args, 'hosts');
  return raw ? raw.split(',').filter((h) => h !== '') : [...DEFAULT_HOSTS];
}

function describeWorkload(w: Workload): string {
  if (w.type === 'idle') return 'idle';
  if (w.type === 'hotset') return `hotset ${formatBytes(w.hotSetBytes)} @ ${formatRate(w.rateBytesPerSec)}`;
  return `${w.type} @ ${formatRate(w.rateBytesPerSec)}`;
}

/** Runs a `vm` subcommand. */
export async function vmCommand(client: FerryClient, args: ParsedArgs, out: (line: string) => void): Promise<void> {
  const [, sub, vmId] = args.positionals;
  const json = has(args, 'json');
  if (sub === 'create') {
    if (!vmId)
      throw usageError(
        'usage: ferry vm create <vm-id> --host <host> [--memory 256MiB] [--workload idle|random|hotset|sweep] [--rate 20MB/s] [--hot-set 16MiB] [--seed n]',
      );
    const host = flag(args, 'host', 'h1') as string;
    const memoryBytes = parseSize(flag(args, 'memory', DEFAULT_VM_MEMORY) as string);
    const workload = workloadFromArgs(args);
    const seed = numberFlag(args, 'seed');
    await client.requireHost(host);
    const vm = await client.createVm(host, { vmId, memoryBytes, workload, ...(seed !== undefined ? { seed } : {}) });
    out(
      json
        ? JSON.stringify(vm)
        : `created VM ${vm.vmId} on ${host}: ${formatBytes(vm.memoryBytes)}, ${describeWorkload(vm.workload)}, pid ${vm.pid}`,
    );
    return;
  }
  if (sub === 'list') {
    const hosts = hostsFromArgs(args);
    const served: string[] = [];
    for (const h of hosts) if (await client.hostIsServed(h)) served.push(h);
    const listing = await client.listVms(served);
    if (json) {
      out(JSON.stringify(listing));
      return;
    }
    out('HOST  VM                    MEMORY      STATE     WORKLOAD');
    for (const { hostId, vms } of listing) {
      for (const vm of vms) {
        out(
          `${hostId.padEnd(5)} ${vm.vmId.padEnd(21)} ${formatBytes(vm.memoryBytes).padEnd(11)} ${(vm.mode === 'incoming' ? 'incoming' : vm.state).padEnd(9)} ${describeWorkload(vm.workload)}`,
        );
      }
    }
    for (const h of hosts.filter((x) => !served.includes(x))) out(`${h}: no host agent is serving this host`);
    return;
  }
  if (sub === 'destroy') {
    if (!vmId) throw usageError('usage: ferry vm destroy <vm-id> [--host <host>]');
    const host = flag(args, 'host') ?? (await client.locateVm(vmId, hostsFromArgs(args))).hostId;
    await client.destroyVm(host, vmId);
    out(`destroyed VM ${vmId} on ${host}`);
    return;
  }
  throw usageError('usage: ferry vm create|list|destroy …');
}
