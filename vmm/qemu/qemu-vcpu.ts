/**
 * The vCPU of a QEMU guest as the engine commands it (GuestCpu), over a running QemuProcess.
 *
 * Pause and resume. `pause()` sends QMP `stop` and resolves once `query-status` says QEMU is not
 * running (`stop` returns only after every vCPU left guest code, so no guest write follows).
 * `resume()` sends `cont` at once; QMP runs the commands of one socket in order, so a later pause's
 * `stop` lands after it. A paused guest stays paused whatever the throttle does: the throttle never
 * sends `cont` to a guest pause() holds. `stop()` lifts the throttle and sends nothing more; it does
 * not end QEMU (the caller owns the QemuProcess).
 *
 * Throttle. `setThrottle(p)` deschedules the guest for p % of its time, by one of two means:
 * - `slices` (the default): QMP `stop` for p % of every THROTTLE_SLICE_PERIOD_MS (100 ms), `cont`
 *   for the rest. QEMU's clocks stop with the guest, so the guest loses no time of its own: it just
 *   runs (1 - p) of the wall clock, and a paced guest writes (1 - p) of its rate.
 * - `cgroup` (on request, where the cgroup v1 `cpu` controller is writable; else slices): a cgroup
 *   `ferry-<vmId>-<qemu pid>` holding only the vCPU threads (`CPU n/TCG`, named thanks to
 *   `-name …,debug-threads=on`), `cpu.cfs_quota_us` = (100 - p) % of `cpu.cfs_period_us` (100 ms).
 *   Removed (threads moved back) by stop(), when QEMU exits, and when this Node process exits.
 *
 * Why slices. Measured here (2 shared cores, QEMU 7.2 TCG, 128 MiB guest, memwriter over a 16 MiB
 * hot set, verify 64 MB/s; rates from the guest's heartbeats over 4-5 s per setting, two runs where
 * two figures are given; "desched" is the measured descheduled share (slices: stopped time; cgroup:
 * cpu.stat throttled_time), "gap" the longest wall-clock gap between heartbeats, 100 ms unthrottled):
 *   writer asked   throttle   cgroup: MB/s, desched, gap         slices: MB/s, desched, gap
 *   50 MB/s        50 %       50.0,     0 %,      101 ms         24.8,  49.5 %,  207 ms
 *   50 MB/s        90 %       50.0,     43 %,     169 ms          5.2,  89.5 %, 1015 ms
 *   50 MB/s        99 %        3.7,     99 %,    1399 ms          -
 *   150 MB/s       50 %      150.0,     0 %,      102 ms         74.5,  49.7 %,  206 ms
 *   150 MB/s       90 %       83.2,     83 %,     289 ms         15.3,  89.6 %, 1008 ms
 *   1000 MB/s      25 %      999.9,     5 %,      131 ms        751.0,  24.9 %,  166 ms
 *   1000 MB/s      50 %      721/650,  46/47 %,  194/241 ms    502/503, 49.6/49.7 %, 263/254 ms
 *   1000 MB/s      75 %      347/298,  65/69 %,  380/400 ms    257/264, 74.5/73.8 %, 490/502 ms
 * Per descheduled share the cgroup harms a CPU-bound guest less (47 % descheduled cost it 28-35 %
 * of its writes: its clock runs on and its pacing catches up), with shorter heartbeat gaps. But it
 * deschedules only a vCPU that wants more CPU than its quota, so what a percentage does depends on
 * the guest: a paced writer (the migration case) kept its full rate at 50 % (50 and 150 MB/s) and at
 * 90 % (50 MB/s), then fell to 7 % of it at 99 %, which gives a throttle policy nothing steady to
 * steer by. Slices deschedule the asked share (within 1.2 points) and cut the write rate to (1 - p)
 * of it (within 1.5 points) whatever the guest does, at the price of heartbeat gaps of about
 * 100 ms / (1 - p) of wall time (none in the guest's own time) and 20 QMP commands a second.
 * Note for event timing: each slice emits QMP STOP and RESUME events.
 *
 * Stats. `state` and the throttle are tracked here. `runMs` is the wall time QEMU ran, less the
 * time the throttle descheduled it; `throttledMs` is that time: the stopped slices, or the
 * cgroup's `throttled_time` (cpu.stat). Paused time is neither. `pagesWritten` is the guest
 * program's `written` bytes / 4096 from its last heartbeat, and `workUnits` that plus the
 * heartbeat's guest milliseconds (the guest's clock does not advance while QEMU is stopped).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { VcpuStoppedError, VmmParamsError } from '../errors';
import type { GuestCpu } from '../guest-port';
import type { VcpuStats } from '../vcpu';
import { resolveWorkload, type Workload } from '../workload';
import { QemuThrottleError, QmpCommandError } from './errors';
import type { QemuProcess } from './qemu-process';

/** Root of the cgroup v1 `cpu` controller. */
export const DEFAULT_CPU_CGROUP_ROOT = '/sys/fs/cgroup/cpu';
/** CFS period of the throttle cgroup, microseconds. */
export const DEFAULT_CFS_PERIOD_US = 100_000;
/** Period of one stop/cont cycle of the `slices` throttle, milliseconds. */
export const THROTTLE_SLICE_PERIOD_MS = 100;
const PAGE_BYTES = 4096;
const MIB = 1024 * 1024;

/** How the throttle deschedules the vCPU; see the module header. */
export type QemuThrottleMeans = 'cgroup' | 'slices';

/** Options of QemuVcpu; all but `workload` optional. */
export interface QemuVcpuOptions {
  /** What the guest program was booted to do (its memwriter arguments); validated. */
  workload: Workload;
  /** QEMU is paused now (e.g. a destination started with -S). Default false. */
  paused?: boolean;
  /**
   * A migration destination: its guest program came with the memory, so the first setWorkload (the
   * source's workload, from the final request) is taken as what it runs. Default false.
   */
  incoming?: boolean;
  /** Throttle means; default `slices`; `cgroup` falls back to `slices` where the cgroup root is not writable. */
  throttleMeans?: QemuThrottleMeans;
  /** Root of the cgroup v1 cpu controller; default DEFAULT_CPU_CGROUP_ROOT. */
  cgroupRoot?: string;
}

/**
 * The guest program's arguments for `workload` in a guest whose program fills `fillMib` MiB, as
 * infra/qemu's guestKernelCommandLine takes them: idle → rate 0 and no hot set; random → the hot
 * set is the whole fill; hotset → ⌊hotSetBytes / MiB⌋ (at least 1, at most the fill). Rates in MB/s
 * (10^6 bytes), rounded. Throws VmmParamsError for a sweep (the program has none), a rate under
 * 1 MB/s, or a fillMib that is not a positive integer.
 */
export function memwriterArgs(
  workload: Workload,
  fillMib: number,
): { fillMib: number; hotMib: number; rateMbPerSec: number } {
  const w = resolveWorkload(workload);
  if (!Number.isSafeInteger(fillMib) || fillMib <= 0)
    throw new VmmParamsError('fillMib', `fillMib must be a positive integer, got ${fillMib}`);
  if (w.type === 'idle') return { fillMib, hotMib: 0, rateMbPerSec: 0 };
  if (w.type === 'sweep')
    throw new VmmParamsError('workload.type', 'a QEMU guest cannot run a sweep workload: use idle, random or hotset');
  const rateMbPerSec = Math.round(w.rateBytesPerSec / 1e6);
  if (rateMbPerSec < 1)
    throw new VmmParamsError(
      'workload.rateBytesPerSec',
      `a QEMU guest writes at whole MB/s: workload.rateBytesPerSec must be at least 500000, got ${w.rateBytesPerSec}`,
    );
  const hotMib = w.type === 'random' ? fillMib : Math.min(fillMib, Math.max(1, Math.floor(w.hotSetBytes / MIB)));
  return { fillMib, hotMib, rateMbPerSec };
}

/** Whether the cgroup v1 cpu controller at `root` lets us create a group (probes with a mkdir). */
export function cpuCgroupWritable(root = DEFAULT_CPU_CGROUP_ROOT): boolean {
  const probe = path.join(root, `ferry-probe-${process.pid}`);
  try {
    fs.mkdirSync(probe);
    fs.rmdirSync(probe);
    return fs.existsSync(path.join(root, 'cpu.cfs_quota_us'));
  } catch {
    return false;
  }
}

/** Thread ids of QEMU `pid`'s vCPU threads (`CPU 0/TCG`, `CPU 0/KVM`, …). */
export function vcpuThreadIds(pid: number): number[] {
  return fs
    .readdirSync(`/proc/${pid}/task`)
    .filter((tid) => {
      try {
        return /^CPU \d+\//.test(fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8'));
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** The cpu cgroup (v1) directory thread `tid` of `pid` is in now, under `root`. */
function cpuCgroupOf(root: string, pid: number, tid: number): string {
  const text = fs.readFileSync(`/proc/${pid}/task/${tid}/cgroup`, 'utf8');
  const m = /^\d+:(?:[^:]*,)?cpu(?:,[^:]*)?:(.*)$/m.exec(text);
  return path.join(root, m?.[1] ?? '/');
}

/** A cpu cgroup holding the vCPU threads of one QEMU; remove() puts them back where they were. */
class VcpuCgroup {
  private constructor(
    readonly dir: string,
    private readonly origins: Map<number, string>,
  ) {}

  /** Creates `ferry-<vmId>-<pid>` and moves the vCPU threads in; throws QemuThrottleError (leaving nothing). */
  static create(root: string, vmId: string, pid: number): VcpuCgroup {
    const dir = path.join(root, `ferry-${vmId}-${pid}`);
    let group: VcpuCgroup | undefined;
    try {
      const tids = vcpuThreadIds(pid);
      if (tids.length === 0) throw new Error(`no vCPU thread (CPU n/…) in QEMU process ${pid}`);
      const origins = new Map(tids.map((tid) => [tid, cpuCgroupOf(root, pid, tid)]));
      fs.mkdirSync(dir, { recursive: true });
      group = new VcpuCgroup(dir, origins);
      fs.writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(DEFAULT_CFS_PERIOD_US));
      for (const tid of tids) fs.writeFileSync(path.join(dir, 'tasks'), String(tid));
      return group;
    } catch (error) {
      group?.remove();
      throw new QemuThrottleError(vmId, dir, (error as Error).message, { cause: error });
    }
  }

  setPercent(percent: number): void {
    const quota = percent === 0 ? -1 : Math.max(1000, Math.round((DEFAULT_CFS_PERIOD_US * (100 - percent)) / 100));
    fs.writeFileSync(path.join(this.dir, 'cpu.cfs_quota_us'), String(quota));
  }

  /** Total time the group was throttled, ms (0 once removed). */
  throttledMs(): number {
    try {
      const m = /^throttled_time (\d+)$/m.exec(fs.readFileSync(path.join(this.dir, 'cpu.stat'), 'utf8'));
      return m?.[1] === undefined ? 0 : Number(m[1]) / 1e6;
    } catch {
      return 0;
    }
  }

  /** Moves the threads back to their groups and removes this one; never throws. */
  remove(): void {
    for (const [tid, origin] of this.origins) {
      try {
        fs.writeFileSync(path.join(origin, 'tasks'), String(tid));
      } catch {
        // the thread is gone (QEMU exited): the group empties by itself
      }
    }
    try {
      fs.rmdirSync(this.dir);
    } catch {
      // already removed, or a thread still leaving: nothing more to do from here
    }
  }
}

type Phase = 'running' | 'paused' | 'sliced' | 'stopped';

/** A QEMU guest's vCPU; see the module header. */
export class QemuVcpu implements GuestCpu {
  /** The throttle means in use. */
  readonly throttleMeans: QemuThrottleMeans;
  private fixedWorkload: Workload;
  /** An incoming guest runs whatever program came with its memory: it learns it once, from the source. */
  private workloadUnknown: boolean;
  private readonly cgroupRoot: string;
  private phase: Phase;
  private phaseSinceMs = performance.now();
  private percent = 0;
  private runWallMs = 0;
  private slicedMs = 0;
  private cgroupThrottledMs = 0;
  private cgroup: VcpuCgroup | undefined;
  private sliceTimer: NodeJS.Timeout | undefined;
  private readonly onProcessExit = (): void => this.removeCgroup();
  /** The last QMP command that failed in the background (resume, throttle slices). */
  lastError: Error | undefined;

  constructor(
    private readonly qemu: QemuProcess,
    options: QemuVcpuOptions,
  ) {
    this.fixedWorkload = resolveWorkload(options.workload);
    this.workloadUnknown = options.incoming === true;
    this.phase = options.paused === true ? 'paused' : 'running';
    this.cgroupRoot = options.cgroupRoot ?? DEFAULT_CPU_CGROUP_ROOT;
    this.throttleMeans = options.throttleMeans === 'cgroup' && cpuCgroupWritable(this.cgroupRoot) ? 'cgroup' : 'slices';
    void qemu.exited.then(() => {
      this.removeCgroup();
      this.enter('stopped');
    });
  }

  /**
   * Stops QEMU (QMP `stop`) and resolves once it is not running. Rejects with VcpuStoppedError after
   * stop(), with QmpCommandError or QmpConnectionError when QEMU refuses or is gone.
   */
  async pause(): Promise<void> {
    this.assertAlive('pause');
    // Before the await: a slice ending meanwhile must not `cont` a guest pause() holds.
    this.enter('paused');
    await this.qemu.qmp.execute('stop');
    const status = await this.qemu.status();
    if (status.running)
      throw new QmpCommandError(
        'stop',
        'NotStopped',
        `QEMU reports ${status.status} after stop [vm=${this.qemu.vmId}]`,
      );
  }

  /** Sends `cont` (returns at once; a failure lands in lastError). Throws VcpuStoppedError after stop(). */
  resume(): void {
    this.assertAlive('resume');
    this.enter('running');
    this.send('cont');
  }

  /**
   * Deschedules the guest for `percent` (0..99) of its time; 0 lifts the throttle. Throws
   * VmmParamsError for a value outside 0..99, VcpuStoppedError after stop(), and QemuThrottleError
   * when the cgroup means cannot set up its group.
   */
  setThrottle(percent: number): void {
    if (typeof percent !== 'number' || !(percent >= 0 && percent <= 99)) {
      throw new VmmParamsError('percent', `throttle percent must be a number in 0..99, got ${percent}`);
    }
    this.assertAlive('set the throttle');
    this.percent = Math.round(percent * 100) / 100;
    if (this.throttleMeans === 'cgroup') {
      if (this.cgroup === undefined && this.percent > 0) {
        this.cgroup = VcpuCgroup.create(this.cgroupRoot, this.qemu.vmId, this.qemu.pid);
        process.once('exit', this.onProcessExit);
      }
      this.cgroup?.setPercent(this.percent);
    } else if (this.percent > 0 && this.sliceTimer === undefined) {
      this.scheduleSlice();
    }
  }

  /** Refuses any workload but the one the guest was booted with (VmmParamsError); that one is a no-op. */
  setWorkload(workload: Workload): void {
    const wanted = resolveWorkload(workload);
    if (this.workloadUnknown) {
      this.fixedWorkload = wanted;
      this.workloadUnknown = false;
      return;
    }
    if (JSON.stringify(wanted) === JSON.stringify(this.fixedWorkload)) return;
    throw new VmmParamsError(
      'workload',
      `a QEMU guest's workload is fixed at boot (the guest program's arguments) [vm=${this.qemu.vmId}]: ` +
        `it runs ${JSON.stringify(this.fixedWorkload)}, cannot switch to ${JSON.stringify(wanted)}`,
    );
  }

  /** The workload the guest was booted with. */
  workload(): Workload {
    return this.fixedWorkload;
  }

  /** State, throttle and counters; see the module header. */
  stats(): VcpuStats {
    const now = performance.now();
    const current = now - this.phaseSinceMs;
    const runWallMs = this.runWallMs + (this.phase === 'running' ? current : 0);
    const throttledMs =
      this.slicedMs +
      (this.phase === 'sliced' ? current : 0) +
      this.cgroupThrottledMs +
      (this.cgroup?.throttledMs() ?? 0);
    const hb = this.qemu.lastHeartbeat;
    const pagesWritten = hb === undefined ? 0 : Math.floor(hb.writtenBytes / PAGE_BYTES);
    return {
      state: this.phase === 'sliced' ? 'running' : this.phase,
      throttlePercent: this.percent,
      workUnits: pagesWritten + (hb?.guestMs ?? 0),
      pagesWritten,
      runMs: Math.max(0, runWallMs - (this.throttleMeans === 'cgroup' ? throttledMs : 0)),
      throttledMs,
    };
  }

  /** Lifts the throttle and sends no more commands; QEMU keeps running or paused as it is. Idempotent. */
  stop(): Promise<void> {
    if (this.phase === 'sliced') this.send('cont');
    this.enter('stopped');
    this.removeCgroup();
    return Promise.resolve();
  }

  // The timers are unref'd: a throttle is no reason to keep this process alive.
  private scheduleSlice(): void {
    const periodMs = THROTTLE_SLICE_PERIOD_MS;
    const offMs = (periodMs * this.percent) / 100;
    this.sliceTimer = setTimeout(() => {
      this.sliceTimer = undefined;
      if (this.phase === 'stopped' || this.percent === 0) return;
      if (this.phase === 'running') {
        this.enter('sliced');
        this.send('stop');
        this.sliceTimer = setTimeout(() => {
          this.sliceTimer = undefined;
          // pause() or stop() took over during the slice: the guest stays as they left it.
          if (this.phase !== 'sliced') return this.scheduleSlice();
          this.enter('running');
          this.send('cont');
          this.scheduleSlice();
        }, offMs).unref();
      } else {
        this.scheduleSlice();
      }
    }, periodMs - offMs).unref();
  }

  private enter(phase: Phase): void {
    const now = performance.now();
    if (this.phase === 'running') this.runWallMs += now - this.phaseSinceMs;
    if (this.phase === 'sliced') this.slicedMs += now - this.phaseSinceMs;
    if (this.phase === 'stopped') return;
    this.phase = phase;
    this.phaseSinceMs = now;
    if (phase === 'stopped') clearTimeout(this.sliceTimer);
  }

  private send(command: 'stop' | 'cont'): void {
    this.qemu.qmp.execute(command).catch((error: Error) => (this.lastError = error));
  }

  private removeCgroup(): void {
    if (this.cgroup === undefined) return;
    this.cgroupThrottledMs += this.cgroup.throttledMs();
    this.cgroup.remove();
    this.cgroup = undefined;
    process.removeListener('exit', this.onProcessExit);
  }

  private assertAlive(action: string): void {
    if (this.phase === 'stopped') throw new VcpuStoppedError(action, { cause: this.lastError });
  }
}
