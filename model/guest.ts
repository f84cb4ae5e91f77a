/**
 * What every layer knows of a guest: the page size, what its vCPU does (the workload) and what its
 * vCPU reports. The simulated VMM, the QEMU driver, the engine and the workflows share these.
 */

/** Size of a guest page (bytes). */
export const PAGE_SIZE_BYTES = 4096;

/**
 * What the simulated guest does. Rates are bytes per second of page writes while the vCPU runs
 * (a throttled vCPU writes proportionally less); each write dirties one whole 4 KiB page.
 * - `idle`: writes nothing.
 * - `random`: uniformly random pages over all memory.
 * - `hotset`: random pages within the first `hotSetBytes` of memory (rounded down to pages, at
 *   least one page).
 * - `sweep`: pages in order 0, 1, 2, …, wrapping at the end of memory.
 */
export type Workload =
  | { type: 'idle' }
  | { type: 'random'; rateBytesPerSec: number }
  | { type: 'hotset'; rateBytesPerSec: number; hotSetBytes: number }
  | { type: 'sweep'; rateBytesPerSec: number };

/**
 * A snapshot of the vCPU. `throttlePercent` is the share of time it is descheduled (0..99);
 * `workUnits` = pages written + whole milliseconds it was scheduled (neither paused nor
 * descheduled by the throttle), so its rate shows the guest's slowdown; `pagesWritten` counts
 * page writes since start; `runMs` the time it was scheduled and `throttledMs` the time the throttle
 * descheduled it (paused time is neither), so throttledMs / (runMs + throttledMs) over an interval
 * is the share of the work it would have done that the throttle took.
 */
export interface VcpuStats {
  state: 'running' | 'paused' | 'stopped';
  throttlePercent: number;
  workUnits: number;
  pagesWritten: number;
  runMs: number;
  throttledMs: number;
}
