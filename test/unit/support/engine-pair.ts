/**
 * Both halves of one migration in this process, for unit tests of the engine: the real
 * OutgoingMigration and IncomingMigration over an in-memory bus (in-memory-bus.ts), a real
 * directory store in a temporary directory, and a simulated guest's memory (GuestMemory) on each
 * side. The vCPU is a stand-in that never writes: a test writes pages itself, so it knows what the
 * destination must end up with.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FaultPoints } from '../../../data-plane/fault-points';
import { IncomingMigration } from '../../../data-plane/incoming-migration';
import { OutgoingMigration } from '../../../data-plane/outgoing-migration';
import { migrationSubjects, type MigrationSubjects } from '../../../data-plane/subjects';
import type { EngineDeps } from '../../../data-plane/engine-deps';
import { openPageStore, type PageStore } from '../../../store';
import type { VmmContext } from '../../../vmm/extensions';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../../vmm/guest-memory';
import type { GuestCpu } from '../../../vmm/guest-port';
import { GuestRun } from '../../../vmm/guest-run';
import type { VcpuStats, Workload } from '../../../vmm/vcpu';
import { InMemoryBroker, type InMemoryBus } from './in-memory-bus';

/** A vCPU that runs nothing: pause and resume only change its state. */
export class StillCpu implements GuestCpu {
  private state: VcpuStats['state'] = 'running';
  private current: Workload = { type: 'idle' };

  async pause(): Promise<void> {
    this.state = 'paused';
  }

  resume(): void {
    this.state = 'running';
  }

  setThrottle(): void {}

  setWorkload(workload: Workload): void {
    this.current = workload;
  }

  workload(): Workload {
    return this.current;
  }

  stats(): VcpuStats {
    return { state: this.state, throttlePercent: 0, workUnits: 0, pagesWritten: 0, runMs: 0, throttledMs: 0 };
  }

  async stop(): Promise<void> {
    this.state = 'stopped';
  }
}

/** One VMM's side: its guest memory and the context the engine sees. */
export interface Side {
  memory: GuestMemory;
  ctx: VmmContext;
  log: string[];
  /** Resolves with the first line the engine logs from now on that matches `pattern`. */
  logged(pattern: RegExp): Promise<string>;
}

function side(vmId: string, pageCount: number, owner: boolean): Side {
  const memory = GuestMemory.create(pageCount);
  const vcpu = new StillCpu();
  const log: string[] = [];
  const watchers = new Set<(line: string) => void>();
  return {
    memory,
    log,
    logged: (pattern) =>
      new Promise((resolve) => {
        const watcher = (line: string): void => {
          if (!pattern.test(line)) return;
          watchers.delete(watcher);
          resolve(line);
        };
        watchers.add(watcher);
      }),
    ctx: {
      vmId,
      seed: 7,
      memory,
      vcpu,
      run: new GuestRun(vcpu, vmId, owner),
      mode: owner ? 'run' : 'incoming',
      log: (msg) => {
        log.push(msg);
        for (const watcher of watchers) watcher(msg);
      },
      shutdown: () => undefined,
    },
  };
}

/** Options of a pair; the defaults make a small guest in small batches. */
export interface EnginePairOptions {
  pageCount?: number;
  batchPages?: number;
  creditWindow?: number;
  /** The migration's id and key (base64); by default, new ones. */
  migrationId?: string;
  key?: string;
}

/** See the module comment. */
export interface EnginePair {
  broker: InMemoryBroker;
  subjects: MigrationSubjects;
  store: PageStore;
  source: Side;
  destination: Side;
  /** The migration's key, base64. */
  key: string;
  outgoing: OutgoingMigration;
  incoming: IncomingMigration;
  /** The connection of each side, once started. */
  sourceBus: InMemoryBus;
  destinationBus: InMemoryBus;
  /** Closes both sides and removes the store's directory. */
  close(): Promise<void>;
}

/** Writes generation `generation` of pages `indexes` of `memory` (self-checking content). */
export function writePages(memory: GuestMemory, indexes: Iterable<number>, generation: number): void {
  for (const index of indexes) memory.writePage(index, generation, 11);
}

/** Indexes of the pages whose bytes differ between `a` and `b`. */
export function differingPages(a: GuestMemory, b: GuestMemory): number[] {
  const differ: number[] = [];
  for (let i = 0; i < a.pageCount; i += 1) {
    const at = i * PAGE_SIZE_BYTES;
    if (!a.bytes.subarray(at, at + PAGE_SIZE_BYTES).equals(b.bytes.subarray(at, at + PAGE_SIZE_BYTES))) differ.push(i);
  }
  return differ;
}

/**
 * Starts a migration's destination, then its source, over one broker. `prepare` runs first, with
 * the broker, the subjects and the source's memory: to arm faults and write the guest's pages.
 */
export async function startEnginePair(
  options: EnginePairOptions = {},
  prepare?: (broker: InMemoryBroker, subjects: MigrationSubjects, source: GuestMemory) => void,
): Promise<EnginePair> {
  const pageCount = options.pageCount ?? 64;
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-engine-'));
  const store = openPageStore(dir);
  const broker = new InMemoryBroker();
  const migrationId = options.migrationId ?? `m${randomBytes(4).toString('hex')}`;
  const subjects = migrationSubjects('src', 'dst', migrationId);
  const key = options.key ?? randomBytes(32).toString('base64');
  const source = side('vm1', pageCount, true);
  const destination = side('vm1', pageCount, false);
  prepare?.(broker, subjects, source.memory);
  const buses: InMemoryBus[] = [];
  const deps: EngineDeps = {
    connect: async (_config, hostId) => {
      const bus = broker.connect({ inboxPrefix: `_INBOX.${hostId}` });
      buses.push(bus);
      return bus;
    },
    openStore: () => store,
  };
  const common = { migrationId, nats: { url: 'nats://in-memory' }, store: dir, baseEpoch: 0, key };
  const incoming = await IncomingMigration.start(
    destination.ctx,
    { ...common, hostId: 'dst', sourceHost: 'src', creditWindow: options.creditWindow ?? 4 },
    new FaultPoints(() => undefined),
    deps,
  );
  const outgoing = await OutgoingMigration.start(
    source.ctx,
    { ...common, hostId: 'src', destinationHost: 'dst', batchPages: options.batchPages ?? 4 },
    new FaultPoints(() => undefined),
    deps,
  );
  const [destinationBus, sourceBus] = buses as [InMemoryBus, InMemoryBus];
  return {
    broker,
    subjects,
    store,
    source,
    destination,
    key,
    outgoing,
    incoming,
    sourceBus,
    destinationBus,
    close: async () => {
      await outgoing.close();
      await incoming.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
