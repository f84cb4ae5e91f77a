/**
 * The control block shared by a Vcpu (main thread) and its worker: one small SharedArrayBuffer
 * read and written with Atomics, so pausing needs no message round trip.
 *
 * Layout: Int32 words [command, ack, throttle (hundredths of a percent), workload sequence,
 * workload type]; Float64 [rateBytesPerSec, hotSetBytes] at byte 32; BigInt64 [workUnits,
 * pagesWritten, scheduled µs, throttled µs] at byte 48. The main thread writes command, throttle and workload; the worker
 * writes ack and the counters. The workload fields are guarded by a sequence lock: the sequence
 * word is odd while the main thread rewrites them, so the worker never acts on a half-written one.
 */
import type { Workload } from './workload';

/** Command word values: what the main thread wants the vCPU to do. */
export const CMD_RUN = 0;
export const CMD_PAUSE = 1;
export const CMD_STOP = 2;

/** Ack word values: what the worker is doing (it stores PAUSED only after its last write). */
export const ACK_RUNNING = 0;
export const ACK_PAUSED = 1;
export const ACK_STOPPED = 2;

/** Int32 word indices. */
export const W_CMD = 0;
export const W_ACK = 1;
export const W_THROTTLE = 2;
export const W_WORKLOAD_SEQ = 3;
export const W_WORKLOAD_TYPE = 4;

/** BigInt64 indices of the counters. */
export const C_WORK_UNITS = 0;
export const C_PAGES_WRITTEN = 1;
/** Microseconds the vCPU was scheduled (running, not descheduled by the throttle). */
export const C_RUN_US = 2;
/** Microseconds the throttle descheduled the vCPU while it was meant to run. */
export const C_THROTTLED_US = 3;

const CONTROL_BYTES = 80;
const WORKLOAD_TYPES = ['idle', 'random', 'hotset', 'sweep'] as const;

/** Typed views over one control block. */
export interface VcpuControl {
  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;
  readonly params: Float64Array;
  readonly counters: BigInt64Array;
}

/** Views over an existing control block (or a new one when `buffer` is omitted). */
export function openVcpuControl(buffer = new SharedArrayBuffer(CONTROL_BYTES)): VcpuControl {
  return {
    buffer,
    words: new Int32Array(buffer, 0, 8),
    params: new Float64Array(buffer, 32, 2),
    counters: new BigInt64Array(buffer, 48, 4),
  };
}

/** Publishes a workload to the worker (main thread only: the sequence lock has one writer). */
export function publishWorkload(control: VcpuControl, workload: Workload): void {
  Atomics.add(control.words, W_WORKLOAD_SEQ, 1);
  control.params[0] = workload.type === 'idle' ? 0 : workload.rateBytesPerSec;
  control.params[1] = workload.type === 'hotset' ? workload.hotSetBytes : 0;
  Atomics.store(control.words, W_WORKLOAD_TYPE, WORKLOAD_TYPES.indexOf(workload.type));
  Atomics.add(control.words, W_WORKLOAD_SEQ, 1);
}

/** Reads the workload last published and the (even) sequence number it was published under. */
export function readWorkload(control: VcpuControl): { workload: Workload; seq: number } {
  for (;;) {
    const before = Atomics.load(control.words, W_WORKLOAD_SEQ);
    if (before % 2 !== 0) continue;
    const type = WORKLOAD_TYPES[Atomics.load(control.words, W_WORKLOAD_TYPE)] ?? 'idle';
    const rateBytesPerSec = control.params[0] ?? 0;
    const hotSetBytes = control.params[1] ?? 0;
    if (Atomics.load(control.words, W_WORKLOAD_SEQ) !== before) continue;
    if (type === 'idle') return { workload: { type }, seq: before };
    if (type === 'hotset') return { workload: { type, rateBytesPerSec, hotSetBytes }, seq: before };
    return { workload: { type, rateBytesPerSec }, seq: before };
  }
}
