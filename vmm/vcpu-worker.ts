/**
 * Entry point of a vCPU worker thread (started by Vcpu). It runs the guest's write workload on
 * the shared GuestMemory in ticks of about 1 ms and obeys the control block: it sleeps with
 * Atomics.wait on the command word, so pause and stop wake it at once, and it re-reads the command
 * before every page write, so no write starts after it has acknowledged a pause.
 *
 * Time model: while running, the vCPU earns page-write credit at the workload's rate; throttling
 * deschedules it for throttle% of every 10 ms window (sleeps of at most 5 ms) and paused or
 * descheduled time earns nothing. workUnits = pages written + whole milliseconds scheduled, so it
 * grows about (100 − throttle)% as fast as unthrottled. Scheduled and throttled time are counted
 * apart too (a pause counts as neither), so the share of its time a throttle took is measured. Page choice is reproducible: the first
 * workload writes the pages of createPageChooser(workload, pageCount, seed), in that order.
 */
import { workerData } from 'node:worker_threads';
import { GuestMemory } from './guest-memory';
import type { GuestMemoryShared } from './guest-memory';
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
  W_WORKLOAD_SEQ,
  openVcpuControl,
  readWorkload,
} from './vcpu-control';
import { createPageChooser, workloadPagesPerMs } from './workload';

/** What Vcpu.start hands to the worker. */
export interface VcpuWorkerData {
  shared: GuestMemoryShared;
  control: SharedArrayBuffer;
  seed: number;
}

const TICK_MS = 1;
const THROTTLE_WINDOW_MS = 10;
const MAX_SLEEP_SLICE_MS = 5;
/** Write credit is capped at this much run time, so a vCPU that fell behind does not burst. */
const MAX_CREDIT_MS = 5;

function runVcpu(data: VcpuWorkerData): void {
  const memory = GuestMemory.fromShared(data.shared);
  const control = openVcpuControl(data.control);
  const { words, counters } = control;
  const meta = memory.meta;
  let seq = -1;
  let workloadChanges = -1;
  let pagesPerMs = 0;
  let choose = (): number => -1;
  let credit = 0;
  let pagesWritten = 0;
  let runMs = 0;
  let throttledMs = 0;
  let last = performance.now();
  let windowStart = last;

  const publishCounters = (): void => {
    Atomics.store(counters, C_PAGES_WRITTEN, BigInt(pagesWritten));
    Atomics.store(counters, C_WORK_UNITS, BigInt(pagesWritten + Math.floor(runMs)));
    Atomics.store(counters, C_RUN_US, BigInt(Math.floor(runMs * 1000)));
    Atomics.store(counters, C_THROTTLED_US, BigInt(Math.floor(throttledMs * 1000)));
  };
  const sleepWhileRunning = (ms: number): void => {
    const end = performance.now() + ms;
    for (let left = ms; left > 0 && Atomics.load(words, W_CMD) === CMD_RUN; left = end - performance.now()) {
      Atomics.wait(words, W_CMD, CMD_RUN, Math.min(left, MAX_SLEEP_SLICE_MS));
    }
  };

  for (;;) {
    const command = Atomics.load(words, W_CMD);
    if (command === CMD_STOP) break;
    if (command === CMD_PAUSE) {
      publishCounters();
      Atomics.store(words, W_ACK, ACK_PAUSED);
      Atomics.notify(words, W_ACK);
      while (Atomics.load(words, W_CMD) === CMD_PAUSE) Atomics.wait(words, W_CMD, CMD_PAUSE);
      // Store RUNNING before re-reading the command at the top of the loop: with a pause()
      // that stores PAUSE and then reads the ack, one of the two sides always sees the other.
      Atomics.store(words, W_ACK, ACK_RUNNING);
      last = performance.now();
      windowStart = last;
      continue;
    }
    if (Atomics.load(words, W_WORKLOAD_SEQ) !== seq) {
      const published = readWorkload(control);
      seq = published.seq;
      workloadChanges += 1;
      pagesPerMs = workloadPagesPerMs(published.workload);
      // The first workload follows createPageChooser(workload, pageCount, seed) exactly; later ones
      // get seeds of their own, so switching back does not replay the same pages.
      const chooserSeed = (data.seed + Math.imul(workloadChanges, 0x9e3779b1)) | 0;
      choose = createPageChooser(published.workload, memory.pageCount, chooserSeed);
      credit = 0;
    }
    const now = performance.now();
    runMs += now - last;
    credit = Math.min(credit + (now - last) * pagesPerMs, Math.max(1, pagesPerMs * MAX_CREDIT_MS));
    last = now;

    const throttlePercent = Atomics.load(words, W_THROTTLE) / 100;
    const runPhaseMs = THROTTLE_WINDOW_MS * (1 - throttlePercent / 100);
    if (now - windowStart >= THROTTLE_WINDOW_MS) windowStart = now;
    if (throttlePercent > 0 && now - windowStart >= runPhaseMs) {
      publishCounters();
      sleepWhileRunning(THROTTLE_WINDOW_MS - runPhaseMs);
      throttledMs += performance.now() - now;
      last = performance.now();
      windowStart = last;
      continue;
    }

    // A tick that cannot keep up with its credit still ends on time, so the throttle's run phase
    // is not overrun and commands and counters are seen every few ms.
    const writeDeadline =
      throttlePercent > 0 ? Math.min(windowStart + runPhaseMs, now + MAX_CREDIT_MS) : now + MAX_CREDIT_MS;
    while (credit >= 1 && Atomics.load(words, W_CMD) === CMD_RUN && performance.now() < writeDeadline) {
      const index = choose();
      memory.writePage(index, ((meta[index * 2] ?? 0) + 1) >>> 0, data.seed);
      credit -= 1;
      pagesWritten += 1;
    }
    publishCounters();
    const tickEnd = throttlePercent > 0 ? Math.min(now + TICK_MS, windowStart + runPhaseMs) : now + TICK_MS;
    const left = tickEnd - performance.now();
    if (left > 0) Atomics.wait(words, W_CMD, CMD_RUN, left);
  }
  publishCounters();
  Atomics.store(words, W_ACK, ACK_STOPPED);
  Atomics.notify(words, W_ACK);
}

runVcpu(workerData as VcpuWorkerData);
