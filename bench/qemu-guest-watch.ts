/**
 * Small measuring tools of the QEMU bench part: a wall clock in microseconds (QEMU stamps its QMP
 * events with the same clock), a RAM file read whole, a page-by-page comparison of a RAM file with
 * an image in memory, and a watch over a resumed guest (does its program go on, intact?).
 */
import * as fs from 'node:fs';
import type { GuestHeartbeat, QemuProcess } from '../vmm/qemu';

/** How long a resumed guest is watched, ms. */
export const WATCH_MS = 3_000;

const PAGE_BYTES = 4096;
const CHUNK_BYTES = 4 * 1024 * 1024;
/** Console lines that tell the guest kernel gave up. */
const PANIC_LINE = /Kernel panic|general protection|BUG:|Oops|RIP: /;

/** The wall clock in microseconds since the Unix epoch (the clock of QMP event timestamps). */
export function nowUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** The whole file in one buffer (a 1 GiB RAM file from /dev/shm reads in a few hundred ms). */
export function readWhole(file: string): Buffer {
  const size = fs.statSync(file).size;
  const image = Buffer.allocUnsafe(size);
  const fd = fs.openSync(file, 'r');
  try {
    for (let offset = 0; offset < size;) {
      const n = fs.readSync(fd, image, offset, Math.min(CHUNK_BYTES, size - offset), offset);
      if (n === 0) throw new Error(`${file} ended at ${offset} of ${size} bytes`);
      offset += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return image;
}

/** Indexes of the 4 KiB pages in which `file` differs from `image` (sizes must match). */
export function differingPagesOf(file: string, image: Buffer): number[] {
  const size = fs.statSync(file).size;
  if (size !== image.length) throw new Error(`${file} has ${size} bytes, the image ${image.length}`);
  const differing: number[] = [];
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  const fd = fs.openSync(file, 'r');
  try {
    for (let offset = 0; offset < size; offset += CHUNK_BYTES) {
      const length = Math.min(CHUNK_BYTES, size - offset);
      fs.readSync(fd, chunk, 0, length, offset);
      if (chunk.compare(image, offset, offset + length, 0, length) === 0) continue;
      for (let p = 0; p < length; p += PAGE_BYTES)
        if (chunk.compare(image, offset + p, offset + p + PAGE_BYTES, p, p + PAGE_BYTES) !== 0)
          differing.push((offset + p) / PAGE_BYTES);
    }
  } finally {
    fs.closeSync(fd);
  }
  return differing;
}

/** What a resumed guest did in the watch window. */
export interface GuestAfterResume {
  windowMs: number;
  heartbeats: number;
  firstSeq?: number;
  lastSeq?: number;
  /** The last heartbeat's state, `none` without one. */
  state: 'ok' | 'CORRUPT' | 'none';
  bad?: number;
  /** `ferry-corrupt` lines the guest program printed. */
  corruptLines: number;
  /** The guest program's exit status, if it exited. */
  programExit?: number;
  /** QEMU exited in the window (a panicked guest makes it exit: -no-reboot, panic=-1). */
  qemuExited: boolean;
  /** The first console line of a kernel panic or oops, if any. */
  panicLine?: string;
  /** Heartbeats went on from the source's last one (next seq, or one more), state ok, bad 0, no panic. */
  intact: boolean;
}

/**
 * Starts watching `guest`'s console (call it just before `cont`); `settle()` waits until WATCH_MS
 * have passed since (less if QEMU exits) and says what the guest did. `sourceLast` is the source's
 * last heartbeat.
 */
export function watchGuest(guest: QemuProcess): {
  settle(sourceLast: GuestHeartbeat | undefined): Promise<GuestAfterResume>;
} {
  const beats: GuestHeartbeat[] = [];
  let corruptLines = 0;
  let programExit: number | undefined;
  let exited = false;
  const unsubscribe = guest.console.subscribe((m) => {
    if (m.type === 'heartbeat') beats.push(m);
    else if (m.type === 'corrupt') corruptLines += 1;
    else if (m.type === 'exit') programExit = m.status;
  });
  const exitedPromise = guest.exited.then(() => (exited = true));
  const started = Date.now();
  return {
    async settle(sourceLast) {
      let timer: NodeJS.Timeout | undefined;
      const left = Math.max(0, WATCH_MS - (Date.now() - started));
      await Promise.race([exitedPromise, new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
      guest.flushConsole();
      unsubscribe();
      const first = beats[0];
      const last = beats[beats.length - 1];
      const panicLine = guest.recentConsole().find((line) => PANIC_LINE.test(line));
      const intact =
        !exited &&
        first !== undefined &&
        last !== undefined &&
        (sourceLast === undefined || (first.seq > sourceLast.seq && first.seq <= sourceLast.seq + 2)) &&
        last.state === 'ok' &&
        last.bad === 0 &&
        panicLine === undefined;
      return {
        windowMs: Date.now() - started,
        heartbeats: beats.length,
        ...(first ? { firstSeq: first.seq } : {}),
        ...(last ? { lastSeq: last.seq, bad: last.bad } : {}),
        state: last?.state ?? 'none',
        corruptLines,
        ...(programExit !== undefined ? { programExit } : {}),
        qemuExited: exited,
        ...(panicLine !== undefined ? { panicLine: panicLine.slice(0, 200) } : {}),
        intact,
      };
    },
  };
}
