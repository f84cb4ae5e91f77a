/**
 * A simulated vCPU: a worker thread running the guest's write workload against GuestMemory,
 * commanded through a shared control block (see vcpu-control.ts). Pause is acknowledged by the
 * worker through Atomics, so once `pause()` resolves no guest write can happen until `resume()`.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { VcpuStoppedError, VmmParamsError } from './errors';
import type { GuestMemory } from './guest-memory';
import type { GuestCpu } from './guest-port';
import {
  ACK_PAUSED,
  ACK_RUNNING,
  ACK_STOPPED,
  C_PAGES_WRITTEN,
  C_RUN_US,
  C_THROTTLED_US,
  C_WORK_UNITS,
  CMD_PAUSE,
  CMD_RUN,
  CMD_STOP,
  W_ACK,
  W_CMD,
  W_THROTTLE,
  openVcpuControl,
  publishWorkload,
} from './vcpu-control';
import type { VcpuControl } from './vcpu-control';
import type { VcpuWorkerData } from './vcpu-worker';
import { resolveWorkload } from './workload';
import type { Workload } from './workload';
import type { VcpuStats } from '../model/guest';

export type { Workload } from './workload';

export type { VcpuStats } from '../model/guest';

/** Options of Vcpu.start. `paused` (default false) starts it paused, as a migration destination. */
export interface VcpuStartOptions {
  paused?: boolean;
}

/** If the worker has not exited this long after `stop()`, it is terminated (ms). */
export const VCPU_STOP_GRACE_MS = 5_000;

type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs: number,
) => { async: false; value: string } | { async: true; value: Promise<string> };
// Atomics.waitAsync is in Node 20 but in TypeScript's ES2024 lib, not the ES2022 one we target.
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Handle on a running vCPU worker thread. */
export class Vcpu implements GuestCpu {
  private readonly worker: Worker;
  private readonly control: VcpuControl;
  private readonly exited: Promise<void>;
  private currentWorkload: Workload;
  private hasExited = false;
  private failure: unknown;

  private constructor(worker: Worker, control: VcpuControl, workload: Workload) {
    this.worker = worker;
    this.control = control;
    this.currentWorkload = workload;
    this.exited = new Promise((resolve) => {
      worker.on('error', (err) => {
        this.failure = err;
      });
      worker.on('exit', () => {
        this.hasExited = true;
        resolve();
      });
    });
  }

  /**
   * Starts the worker thread running `workload` (validated; throws VmmParamsError) with page
   * choice and page content seeded by `seed` (an integer). Running unless `opts.paused`.
   */
  static start(memory: GuestMemory, workload: Workload, seed: number, opts: VcpuStartOptions = {}): Vcpu {
    const resolved = resolveWorkload(workload);
    if (!Number.isInteger(seed)) throw new VmmParamsError('seed', `seed must be an integer, got ${seed}`);
    const control = openVcpuControl();
    // Started paused, the worker checks the command before its first write, so it is already
    // as good as paused: say so, and a pause() before the thread has booted resolves at once.
    Atomics.store(control.words, W_CMD, opts.paused === true ? CMD_PAUSE : CMD_RUN);
    Atomics.store(control.words, W_ACK, opts.paused === true ? ACK_PAUSED : ACK_RUNNING);
    publishWorkload(control, resolved);
    const data: VcpuWorkerData = { shared: memory.shared(), control: control.buffer, seed: seed | 0 };
    const worker = new Worker(path.join(__dirname, 'vcpu-worker.js'), { workerData: data });
    return new Vcpu(worker, control, resolved);
  }

  /**
   * Pauses the vCPU and resolves once the worker has acknowledged: no guest write happens after
   * that until `resume()`. Rejects with VcpuStoppedError if the worker has stopped.
   */
  async pause(): Promise<void> {
    const words = this.control.words;
    this.assertAlive('pause');
    Atomics.store(words, W_CMD, CMD_PAUSE);
    Atomics.notify(words, W_CMD);
    for (;;) {
      const ack = Atomics.load(words, W_ACK);
      if (ack === ACK_PAUSED) return;
      if (ack === ACK_STOPPED) await this.exited;
      this.assertAlive('pause');
      const wait = waitAsync(words, W_ACK, ack, 100);
      if (wait.async) await Promise.race([wait.value, this.exited]);
    }
  }

  /** Lets a paused vCPU run again (returns at once). Throws VcpuStoppedError if it has stopped. */
  resume(): void {
    this.assertAlive('resume');
    Atomics.store(this.control.words, W_CMD, CMD_RUN);
    Atomics.notify(this.control.words, W_CMD);
  }

  /**
   * Sets the share of time (percent, 0..99, fractions kept to 0.01) the vCPU is descheduled,
   * applied in every 10 ms window as sleeps of at most 5 ms. 0 lifts the throttle.
   * Throws VmmParamsError for a value outside 0..99.
   */
  setThrottle(percent: number): void {
    if (typeof percent !== 'number' || !(percent >= 0 && percent <= 99)) {
      throw new VmmParamsError('percent', `throttle percent must be a number in 0..99, got ${percent}`);
    }
    Atomics.store(this.control.words, W_THROTTLE, Math.round(percent * 100));
  }

  /** Switches the workload (validated; throws VmmParamsError); the worker picks it up within a tick. */
  setWorkload(workload: Workload): void {
    const resolved = resolveWorkload(workload);
    this.assertAlive('set the workload');
    publishWorkload(this.control, resolved);
    this.currentWorkload = resolved;
  }

  /** The workload the vCPU runs (as last set). */
  workload(): Workload {
    return this.currentWorkload;
  }

  /** A snapshot of state, throttle and counters; see VcpuStats. */
  stats(): VcpuStats {
    const { words, counters } = this.control;
    const ack = Atomics.load(words, W_ACK);
    const state = this.hasExited || ack === ACK_STOPPED ? 'stopped' : ack === ACK_PAUSED ? 'paused' : 'running';
    return {
      state,
      throttlePercent: Atomics.load(words, W_THROTTLE) / 100,
      workUnits: Number(Atomics.load(counters, C_WORK_UNITS)),
      pagesWritten: Number(Atomics.load(counters, C_PAGES_WRITTEN)),
      runMs: Number(Atomics.load(counters, C_RUN_US)) / 1000,
      throttledMs: Number(Atomics.load(counters, C_THROTTLED_US)) / 1000,
    };
  }

  /**
   * Stops the worker thread and resolves when it has exited (terminating it if it has not after
   * VCPU_STOP_GRACE_MS). Idempotent.
   */
  async stop(): Promise<void> {
    Atomics.store(this.control.words, W_CMD, CMD_STOP);
    Atomics.notify(this.control.words, W_CMD);
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, VCPU_STOP_GRACE_MS);
    });
    await Promise.race([this.exited, grace]);
    clearTimeout(timer);
    if (!this.hasExited) {
      await this.worker.terminate();
      await this.exited;
    }
  }

  private assertAlive(action: string): void {
    const requested = Atomics.load(this.control.words, W_CMD);
    if (this.hasExited || requested === CMD_STOP) {
      throw new VcpuStoppedError(action, { cause: this.failure });
    }
  }
}
