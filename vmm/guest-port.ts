/**
 * The guest port: what the migration engine needs of a guest, whichever hypervisor runs it. The
 * simulated VMM implements it over its GuestMemory and Vcpu; the QEMU driver over the guest's
 * shared-memory RAM file and QMP. The engine (data-plane/) sees only these two interfaces.
 *
 * Pages and versions. Every page has a version: 0 for a page never written, then a number that
 * grows each time the page is seen changed. `meta` holds two words per page, [version, check],
 * where check is a crc32 of the content the version names; `digest()` is a hash of `meta`, so equal
 * digests mean equal versions and checks on both sides. How versions are kept differs:
 * - the simulated guest writes the version into the page itself (its self-checking header), so the
 *   version of a copy is read from the copy, and a copy torn by a concurrent write fails its check;
 * - a real guest's page holds only the guest's bytes, so the port keeps the versions itself: the
 *   source bumps a page's version when a scan finds it changed since the last scan, and `page()`
 *   is the content of that scan (a snapshot no guest write tears), and the destination records the
 *   version the engine hands it with each page.
 */
import type { VcpuStats } from './vcpu';
import type { Workload } from './workload';

/** A guest's memory as the engine reads (source) and writes (destination) it. */
export interface GuestPages {
  /** Number of 4096-byte pages. */
  readonly pageCount: number;
  /** Two words per page: [version, crc32 of the content]; [0, 0] for a page never written. */
  readonly meta: Uint32Array;
  /**
   * True when each page carries its own version and self-check in its first bytes (the simulated
   * guest's page format): a copy's version is then read from the copy, and a page read back from
   * the store is checked against its header. False for a real guest's memory.
   */
  readonly selfChecking: boolean;
  /** The 4096 bytes of page `index` as the engine may send them (a view; see the module comment). */
  page(index: number): Buffer;
  /** True if page `index` is all zero bytes. */
  isZeroPage(index: number): boolean;
  /**
   * A guest without self-checking pages: copies page `index` into `target` (4 KiB) and returns
   * the version of the copy, or -1 when a scan changed the page during the copy (copy again later).
   * Safe while a scan runs; for readers that run beside the engine (a store's uploads).
   */
  copyVersionedPage?(index: number, target: Buffer): number;
  /**
   * The pages changed since the last call, in ascending order, and forgets them: a page changed
   * during the call is in the result or in the next one, never lost. The first call on a source
   * returns every page that is not zero. A guest that must read its memory to tell (QEMU) answers
   * with a promise; the engine awaits either.
   */
  collectDirty(): Uint32Array | Promise<Uint32Array>;
  /** How many pages changed since the last `collectDirty`, without forgetting them. */
  pendingDirtyCount(): number | Promise<number>;
  /**
   * True when telling which pages changed reads the whole memory (a real guest without a dirty
   * log): the engine then collects once per round, at its end, and the next round (or the
   * switchover) sends what that found, instead of counting at the end and collecting again at the
   * start. Absent or false: a dirty log answers both at once.
   */
  readonly scansForDirty?: boolean;
  /**
   * Destination side: writes the 4096 bytes of `src` into page `index` as version `version` (the
   * version the source sent with it) and returns whether the page passed its self-check (always
   * true for a guest whose pages carry none). Throws RangeError for a bad index or length.
   */
  applyPage(index: number, src: Buffer, version: number): boolean;
  /** sha256 (hex) over `meta`: equal digests, equal versions and checks of every page. */
  digest(): string;
  /** Checks every page it can (the simulated guest's self-checks); for tests and after a migration. */
  verifyAll(): { badPages: number[]; checked: number } | Promise<{ badPages: number[]; checked: number }>;
  /** Writes the whole memory into the file at `path`; resolves to the bytes written. */
  dumpTo(path: string): Promise<number>;
  /**
   * A destination whose guest runs and rewrites memory (QEMU) may keep the memory it held when the
   * guest first ran: writes that into `path`. Throws when it has not kept it.
   */
  dumpAtResumeTo?(path: string): Promise<number>;
}

/**
 * A real guest's device state (CPU registers, timers, interrupt controllers, devices): what moves
 * besides memory. The simulated guest has none.
 */
export interface GuestDevices {
  /** The device state of the paused guest, as bytes its hypervisor loads back. */
  save(): Promise<Buffer>;
  /** Loads `state` into this paused destination guest, before it first runs. */
  load(state: Buffer): Promise<void>;
}

/** A guest's vCPU(s) as the engine and the VMM's built-in methods command them. */
export interface GuestCpu {
  /** Resolves once the guest is paused: no guest write happens after that until `resume`. */
  pause(): Promise<void>;
  /** Lets the guest run again (GuestRun decides when; never call it around GuestRun). */
  resume(): void;
  /** Deschedules the guest for `percent` (0-99) of its time. */
  setThrottle(percent: number): void;
  /** Changes what the guest does (the simulated workload; a real guest may refuse). */
  setWorkload(workload: Workload): void;
  /** What the guest does now. */
  workload(): Workload;
  /** A snapshot of its state and counters. */
  stats(): VcpuStats;
  /** Stops it for good (the VMM shuts down). */
  stop(): Promise<void>;
}
