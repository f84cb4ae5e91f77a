/**
 * Network namespaces and links of one test, for faults a loopback cannot show: one namespace per
 * host, and two links that join the root namespace (where the services run) with every host's
 * namespace: a control link, over which the host agents reach Temporal, and a migration link,
 * over which they and their VMMs reach nats-server. `cut()` takes the migration link down with
 * `ip link set … down` (this kernel has no netem): packets are dropped and no socket is told, as
 * with a pulled cable; the control link stays up. Each link is a bridge in the root namespace with
 * the root's address on it and a veth pair per host.
 *
 * Names carry a short random id, so parallel runs do not collide: namespaces `ferry-<id>-<host>`,
 * interfaces `ferry<id>…` (at most 15 characters). Addresses are two free /24s of 10.77.0.0/16.
 * Everything is recorded in `<stateDir>/network.json` before it is created, so `remove()` and the
 * sweep of a dead test run (harness/test-sweep.ts) take away whatever exists, also after a failed setup.
 * Needs root and iproute2's `ip netns`; the ip commands run synchronously (a few ms each).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NetworkNamespaceError } from './errors';

/** File in a test state dir recording its network, for removal. */
export const NETWORK_RECORD_FILE = 'network.json';
/** The /16 the test networks take their /24s from. */
const ADDRESS_PREFIX = '10.77';
/** Attempts at finding two /24s no interface of the root namespace uses. */
const SUBNET_ATTEMPTS = 20;

/** What a test network consists of: what `remove` deletes. */
interface NetworkRecord {
  namespaces: string[];
  /** Root-namespace ends of the veth pairs (deleting one deletes its peer) and the bridges. */
  links: string[];
}

/** The two links of a test network. */
export type LinkName = 'control' | 'migration';

/** A test network; see the module header. */
export interface TestNetwork {
  /** Namespace each host agent runs in, by host id. */
  namespaces: Record<string, string>;
  /** The root namespace's address on each link: services are exposed there. */
  rootAddress: Record<LinkName, string>;
  /** Takes the migration link down: nothing passes between the hosts and nats-server. */
  cut(): void;
  /** Brings the migration link up again. */
  restore(): void;
  /** Deletes the namespaces and links; safe to call twice. Throws if something stays. */
  remove(): void;
}

function ip(args: readonly string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new NetworkNamespaceError(`ip ${args.join(' ')} failed: ${stderr || (err as Error).message}`, {
      cause: err,
    });
  }
}

/** Throws NetworkNamespaceError unless this process is root and `ip netns` works. */
export function assertNetnsAvailable(): void {
  const uid = process.getuid?.();
  if (uid !== 0) {
    throw new NetworkNamespaceError(`network namespaces need root, but this process runs as uid ${String(uid)}`);
  }
  try {
    ip(['netns', 'list']);
  } catch (err) {
    throw new NetworkNamespaceError(`\`ip netns\` is not usable here (install iproute2): ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Two /24 subnets (third octets) of 10.77.0.0/16 that no root-namespace address is in. */
function freeSubnets(): [number, number] {
  const used = ip(['-o', '-4', 'addr', 'show']);
  for (let attempt = 0; attempt < SUBNET_ATTEMPTS; attempt += 1) {
    const k = 2 * ((randomBytes(1)[0] ?? 0) & 0x7f);
    const taken = [k, k + 1].some((octet) => used.includes(` ${ADDRESS_PREFIX}.${octet}.`));
    if (!taken) return [k, k + 1];
  }
  throw new NetworkNamespaceError(`no two free /24 subnets in ${ADDRESS_PREFIX}.0.0/16 after ${SUBNET_ATTEMPTS} tries`);
}

/** Deletes what the record lists, tolerating what is already gone. */
function removeRecorded(record: NetworkRecord): { removed: string[]; failures: string[] } {
  const removed: string[] = [];
  const failures: string[] = [];
  const remove = (what: string, args: string[], exists: boolean): void => {
    if (!exists) return;
    try {
      ip(args);
      removed.push(what);
    } catch (err) {
      failures.push((err as Error).message);
    }
  };
  const links = ip(['-o', 'link', 'show']);
  // veth ends first: a namespace a process still holds outlives `ip netns del`, and with it its veths.
  for (const link of record.links) {
    remove(`link ${link}`, ['link', 'del', link], links.includes(` ${link}:`) || links.includes(` ${link}@`));
  }
  const namespaces = ip(['netns', 'list'])
    .split('\n')
    .map((line) => line.split(' ')[0]);
  for (const ns of record.namespaces) remove(`network namespace ${ns}`, ['netns', 'del', ns], namespaces.includes(ns));
  return { removed, failures };
}

/**
 * Removes the network recorded in `stateDir`, if any; returns one line per namespace or link it
 * deleted. Throws NetworkNamespaceError naming what stays, and keeps the record then.
 */
export function removeRecordedNetwork(stateDir: string): string[] {
  const file = path.join(stateDir, NETWORK_RECORD_FILE);
  if (!fs.existsSync(file)) return [];
  const { removed, failures } = removeRecorded(JSON.parse(fs.readFileSync(file, 'utf8')) as NetworkRecord);
  if (failures.length > 0) {
    throw new NetworkNamespaceError(`test network of ${stateDir} not fully removed: ${failures.join('; ')}`);
  }
  fs.rmSync(file, { force: true });
  return removed.map((what) => `removed ${what} (state ${stateDir})`);
}

/**
 * Creates a namespace per host in `hosts` and the control and migration links, recorded in
 * `stateDir`. Throws NetworkNamespaceError (after removing what it made) when that fails.
 */
export function createTestNetwork(stateDir: string, hosts: readonly string[]): TestNetwork {
  assertNetnsAvailable();
  const bad = hosts.find((h) => !/^[A-Za-z0-9_-]{1,40}$/.test(h));
  if (bad !== undefined) throw new NetworkNamespaceError(`host id ${JSON.stringify(bad)} cannot name a namespace`);
  if (hosts.length > 99) throw new NetworkNamespaceError(`at most 99 hosts per test network, got ${hosts.length}`);
  const id = randomBytes(2).toString('hex');
  const subnets = freeSubnets();
  const linkNames: LinkName[] = ['control', 'migration'];
  const bridge = (link: LinkName): string => `ferry${id}${link[0]}`;
  const namespaces = Object.fromEntries(hosts.map((h) => [h, `ferry-${id}-${h}`]));
  const record: NetworkRecord = {
    namespaces: Object.values(namespaces),
    links: [...hosts.flatMap((_, i) => linkNames.map((l) => `${bridge(l)}${i}`)), ...linkNames.map(bridge)],
  };
  fs.writeFileSync(path.join(stateDir, NETWORK_RECORD_FILE), JSON.stringify(record));
  const address = (link: LinkName, hostNumber: number): string =>
    `${ADDRESS_PREFIX}.${subnets[linkNames.indexOf(link)]}.${hostNumber}`;
  try {
    for (const link of linkNames) {
      ip(['link', 'add', bridge(link), 'type', 'bridge']);
      ip(['addr', 'add', `${address(link, 1)}/24`, 'dev', bridge(link)]);
      ip(['link', 'set', bridge(link), 'up']);
    }
    hosts.forEach((host, i) => {
      const ns = namespaces[host] as string;
      ip(['netns', 'add', ns]);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      for (const link of linkNames) {
        const rootEnd = `${bridge(link)}${i}`;
        ip(['link', 'add', rootEnd, 'type', 'veth', 'peer', 'name', `${rootEnd}h`, 'netns', ns]);
        ip(['link', 'set', rootEnd, 'master', bridge(link), 'up']);
        ip(['-n', ns, 'addr', 'add', `${address(link, 10 + i)}/24`, 'dev', `${rootEnd}h`]);
        ip(['-n', ns, 'link', 'set', `${rootEnd}h`, 'up']);
      }
    });
  } catch (err) {
    removeRecorded(record);
    throw err;
  }
  return {
    namespaces,
    rootAddress: { control: address('control', 1), migration: address('migration', 1) },
    cut: () => void ip(['link', 'set', bridge('migration'), 'down']),
    restore: () => void ip(['link', 'set', bridge('migration'), 'up']),
    remove: () => void removeRecordedNetwork(stateDir),
  };
}
