/**
 * The hypervisor driver: how a host agent creates, finds, controls and destroys the VMs of its
 * host. `SimulatedDriver` runs each VM as a detached VMM process (vmm-process.ts); a QEMU/QMP
 * driver could implement the same interface.
 *
 * SimulatedDriver semantics: state lives in files (vm-records.ts), so a new driver instance (the
 * agent restarted) finds the VMs its predecessor started. createVm and destroyVm are safe to
 * retry: createVm refuses an id that runs, prepareIncoming returns the incoming VM already there,
 * destroyVm of a VM that is gone succeeds. Calls for one vmId are serialised within a driver
 * instance, and creating a VM is exclusive on the host even across driver instances (a creation
 * lock file): of two creations of one id at once, exactly one starts a VMM.
 */
import * as path from 'node:path';
import { ID_RULE, isValidId } from '../model';
import { buildGuestImage, cachedGuestImage, type GuestImage } from '../infra/qemu';
import { VmExistsError, VmNotFoundError } from './errors';
import { PAGE_SIZE_BYTES } from './guest-memory';
import { DEFAULT_LAUNCH_TIMEOUT_MS, launchVmm } from './launch';
import { VmmClient } from './vmm-client';
import type { VmmStatus } from './vmm-methods';
import { isVmmAlive, VmRecordStore, waitForVmmExit } from './vm-records';
import type { VmRecord } from './vm-records';
import { pageCountOf, resolveDriver, resolveVmSpec, validateGuestImageKey, validateVmId } from './vm-spec';
import type { VmDriverName, VmSpec } from './vm-spec';
import { DEFAULT_WORKLOAD } from './workload';

export type { VmRecord } from './vm-records';
export type { VmSpec } from './vm-spec';
export type { Workload } from './workload';

/** Least time a QEMU VMM gets to start serving: image build (first time) and boot included (ms). */
export const QEMU_LAUNCH_TIMEOUT_MS = 100_000;

/** The operations a host agent needs from a hypervisor. */
export interface HypervisorDriver {
  /** Starts a VM (mode run). Throws InvalidVmSpecError, VmExistsError if the id exists here, VmmLaunchError. */
  createVm(spec: VmSpec): Promise<VmRecord>;
  /**
   * Starts an empty, paused VM to migrate into (mode incoming); returns the existing one if already
   * there. `guestImageKey`: the QEMU guest image the source runs (VmRecord.guestImageKey), used
   * when this host holds it.
   */
  prepareIncoming(vmId: string, memoryBytes: number, driver?: VmDriverName, guestImageKey?: string): Promise<VmRecord>;
  /** The VM's record, or undefined if there is none or its process is dead (the stale record is removed). */
  getVm(vmId: string): Promise<VmRecord | undefined>;
  /** Every live VM on the host. */
  listVms(): Promise<VmRecord[]>;
  /** A connected control client of the VM (close it when done). Throws VmNotFoundError, VmmConnectError. */
  control(vmId: string): Promise<VmmClient>;
  /** Stops the VM (shutdown, then SIGKILL after a grace period) and forgets it. Idempotent. */
  destroyVm(vmId: string): Promise<void>;
  /**
   * Records that an incoming VM now runs (a migration into it completed): its record's mode
   * becomes 'run' and its workload the one its VMM reports. Idempotent; throws VmNotFoundError.
   */
  markRunning(vmId: string): Promise<void>;
}

/** Time a VMM has to exit after `shutdown` before it is killed (ms). */
export const DEFAULT_DESTROY_GRACE_MS = 5_000;

/**
 * Options of SimulatedDriver. `hostId` names the host; `stateDir` holds `hosts/<hostId>/vms/`.
 * `launchTimeoutMs` (default DEFAULT_LAUNCH_TIMEOUT_MS) and `destroyGraceMs` (default
 * DEFAULT_DESTROY_GRACE_MS) bound start and stop.
 */
export interface SimulatedDriverOptions {
  hostId: string;
  stateDir: string;
  launchTimeoutMs?: number;
  destroyGraceMs?: number;
}

/** SimulatedDriverOptions validated, with defaults applied. */
export type ResolvedSimulatedDriverOptions = Required<SimulatedDriverOptions>;

/** Validates driver options; throws RangeError naming the option and the bad value. */
export function resolveSimulatedDriverOptions(raw: SimulatedDriverOptions): ResolvedSimulatedDriverOptions {
  if (!isValidId(raw.hostId)) throw new RangeError(`hostId must be ${ID_RULE}, got ${JSON.stringify(raw.hostId)}`);
  if (typeof raw.stateDir !== 'string' || raw.stateDir === '') {
    throw new RangeError(`stateDir must be a directory path, got ${JSON.stringify(raw.stateDir)}`);
  }
  const launchTimeoutMs = raw.launchTimeoutMs ?? DEFAULT_LAUNCH_TIMEOUT_MS;
  const destroyGraceMs = raw.destroyGraceMs ?? DEFAULT_DESTROY_GRACE_MS;
  for (const [name, value] of [
    ['launchTimeoutMs', launchTimeoutMs],
    ['destroyGraceMs', destroyGraceMs],
  ] as const) {
    if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be a positive number, got ${value}`);
  }
  return { hostId: raw.hostId, stateDir: path.resolve(raw.stateDir), launchTimeoutMs, destroyGraceMs };
}

/** HypervisorDriver over simulated VMM processes; see the module comment. */
export class SimulatedDriver implements HypervisorDriver {
  private readonly opts: ResolvedSimulatedDriverOptions;
  private readonly store: VmRecordStore;
  private readonly locks = new Map<string, Promise<unknown>>();
  private guestImage: Promise<GuestImage> | undefined;

  /** Throws RangeError for invalid options (see resolveSimulatedDriverOptions). */
  constructor(opts: SimulatedDriverOptions) {
    this.opts = resolveSimulatedDriverOptions(opts);
    this.store = new VmRecordStore(path.join(this.opts.stateDir, 'hosts', this.opts.hostId, 'vms'));
  }

  /** See HypervisorDriver. */
  async createVm(spec: VmSpec): Promise<VmRecord> {
    const resolved = resolveVmSpec(spec);
    return this.creating(resolved.vmId, async () => {
      const existing = await this.getVm(resolved.vmId);
      if (existing !== undefined) {
        throw new VmExistsError(resolved.vmId, this.opts.hostId, `a ${existing.mode} VMM runs as pid ${existing.pid}`);
      }
      return this.launch(resolved.vmId, resolved.pageCount, 'run', resolved);
    });
  }

  /** See HypervisorDriver. */
  async prepareIncoming(
    vmId: string,
    memoryBytes: number,
    driver: VmDriverName = 'simulated',
    guestImageKey?: string,
  ): Promise<VmRecord> {
    validateVmId(vmId);
    const pageCount = pageCountOf(memoryBytes);
    const driverName = resolveDriver(driver, memoryBytes);
    const imageKey = validateGuestImageKey(guestImageKey, driverName);
    return this.creating(vmId, async () => {
      const existing = await this.getVm(vmId);
      const existingDriver = existing?.driver ?? 'simulated';
      if (existing?.mode === 'incoming' && existing.memoryBytes === memoryBytes && existingDriver === driverName)
        return existing;
      if (existing !== undefined) {
        const what = `a ${existing.mode} ${existingDriver} VMM of ${existing.memoryBytes} bytes runs as pid ${existing.pid}`;
        throw new VmExistsError(
          vmId,
          this.opts.hostId,
          `${what}, wanted incoming ${driverName} of ${memoryBytes} bytes`,
        );
      }
      return this.launch(vmId, pageCount, 'incoming', { workload: DEFAULT_WORKLOAD, driver: driverName }, imageKey);
    });
  }

  /** See HypervisorDriver. */
  async getVm(vmId: string): Promise<VmRecord | undefined> {
    const record = await this.store.read(vmId);
    if (record === undefined) return undefined;
    if (isVmmAlive(record.pid, vmId)) return record;
    await this.store.remove(vmId);
    return undefined;
  }

  /** See HypervisorDriver. */
  async listVms(): Promise<VmRecord[]> {
    const records = await Promise.all((await this.store.list()).map((vmId) => this.getVm(vmId)));
    return records.filter((record): record is VmRecord => record !== undefined);
  }

  /** See HypervisorDriver. */
  async control(vmId: string): Promise<VmmClient> {
    const record = await this.getVm(vmId);
    if (record === undefined) throw new VmNotFoundError(vmId, this.opts.hostId);
    return VmmClient.connect(record.socketPath, { vmId });
  }

  /** See HypervisorDriver. */
  async destroyVm(vmId: string): Promise<void> {
    await this.withLock(vmId, async () => {
      const record = await this.store.read(vmId);
      if (record !== undefined && isVmmAlive(record.pid, vmId)) {
        await this.stopProcess(record);
      }
      await this.store.remove(vmId);
    });
  }

  /** See HypervisorDriver. */
  async markRunning(vmId: string): Promise<void> {
    await this.withLock(vmId, async () => {
      const record = await this.getVm(vmId);
      if (record === undefined) throw new VmNotFoundError(vmId, this.opts.hostId);
      let workload = record.workload;
      try {
        const client = await VmmClient.connect(record.socketPath, { vmId, timeoutMs: 1_000 });
        try {
          workload = (await client.call<VmmStatus>('status', undefined, { timeoutMs: 2_000 })).workload;
        } finally {
          client.close();
        }
      } catch {
        // The record's workload is informational: keep the old one rather than fail the handover.
      }
      if (record.mode !== 'run' || JSON.stringify(workload) !== JSON.stringify(record.workload)) {
        await this.store.write({ ...record, mode: 'run', workload });
      }
    });
  }

  private async launch(
    vmId: string,
    pageCount: number,
    mode: VmRecord['mode'],
    spec: Pick<VmSpec, 'workload' | 'seed' | 'fillRatio' | 'driver'>,
    guestImageKey?: string,
  ): Promise<VmRecord> {
    const paths = this.store.paths(vmId);
    const image = spec.driver === 'qemu' ? await this.qemuGuestImage(guestImageKey) : undefined;
    const record = (pid: number): VmRecord => ({
      vmId,
      hostId: this.opts.hostId,
      pid,
      socketPath: paths.socket,
      pageCount,
      memoryBytes: pageCount * PAGE_SIZE_BYTES,
      mode,
      workload: spec.workload,
      createdAt: new Date().toISOString(),
      ...(spec.driver !== undefined && spec.driver !== 'simulated' ? { driver: spec.driver } : {}),
      ...(image ? { guestImageKey: image.key } : {}),
    });
    // The record is written as soon as the pid is known: an agent that dies while a large VM
    // fills its memory finds the VM on restart instead of orphaning it.
    const launched = launchVmm({
      vmId,
      pageCount,
      socketPath: paths.socket,
      logPath: paths.log,
      mode,
      workload: spec.workload,
      ...(spec.seed === undefined ? {} : { seed: spec.seed }),
      ...(spec.fillRatio === undefined ? {} : { fillRatio: spec.fillRatio }),
      ...(spec.driver === undefined ? {} : { driver: spec.driver }),
      ...(image ? { guestImage: image } : {}),
      // A QEMU guest boots its kernel and guest program before its VMM serves (5-9 s under TCG here).
      timeoutMs:
        spec.driver === 'qemu'
          ? Math.max(this.opts.launchTimeoutMs, QEMU_LAUNCH_TIMEOUT_MS)
          : this.opts.launchTimeoutMs,
      onSpawn: (pid) => this.store.write(record(pid)),
    });
    try {
      const { pid } = await launched;
      return (await this.store.read(vmId)) ?? record(pid);
    } catch (err) {
      await this.store.removeRecord(vmId);
      throw err;
    }
  }

  /**
   * The QEMU guest image: the cached one of key `key` where given and held here (a destination
   * starts what its source runs, without asking apt, ~1.2 s), else this host's, built (or found
   * cached) once per driver. A failed build is tried again next time.
   */
  private qemuGuestImage(key?: string): Promise<GuestImage> {
    const cached = key === undefined ? undefined : cachedGuestImage(key);
    if (cached) return Promise.resolve(cached);
    this.guestImage ??= buildGuestImage().catch((err: unknown) => {
      this.guestImage = undefined;
      throw err;
    });
    return this.guestImage;
  }

  private async stopProcess(record: VmRecord): Promise<void> {
    try {
      const client = await VmmClient.connect(record.socketPath, { vmId: record.vmId, timeoutMs: 1_000 });
      try {
        await client.call('shutdown', undefined, { timeoutMs: 2_000 });
      } finally {
        client.close();
      }
    } catch {
      signal(record.pid, 'SIGTERM');
    }
    if (await waitForVmmExit(record.pid, record.vmId, this.opts.destroyGraceMs)) return;
    signal(record.pid, 'SIGKILL');
    await waitForVmmExit(record.pid, record.vmId, 2_000);
  }

  /**
   * Runs `work` (which starts a VMM for `vmId`) under the driver's lock and the host-wide creation
   * lock (see VmRecordStore.lockCreation): of two creations at once, even by two driver instances,
   * one runs and the other throws VmExistsError.
   */
  private async creating<T>(vmId: string, work: () => Promise<T>): Promise<T> {
    return this.withLock(vmId, async () => {
      const unlock = await this.store.lockCreation(vmId);
      if (unlock === undefined) throw new VmExistsError(vmId, this.opts.hostId, 'another process is creating it');
      try {
        return await work();
      } finally {
        await unlock();
      }
    });
  }

  private async withLock<T>(vmId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(vmId) ?? Promise.resolve();
    const current = previous.catch(() => undefined).then(work);
    this.locks.set(vmId, current);
    try {
      return await current;
    } finally {
      if (this.locks.get(vmId) === current) this.locks.delete(vmId);
    }
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone: that is what we wanted.
  }
}
