/**
 * Extension point of the VMM process: methods registered here run inside the VMM process, next to
 * the guest's memory and vCPU, as QEMU's migration code runs inside QEMU (no copy of each page
 * across a process boundary). The VMM calls `registerExtensions` once at start, after memory and
 * vCPU exist and before it serves its socket; the methods returned are served beside the built-in
 * ones (status, pause, resume, …), whose names they must not reuse.
 *
 * Handlers run concurrently with each other and with built-in methods. A handler may run for
 * many seconds as long as it awaits now and then: a synchronous stretch blocks the whole
 * control channel. A thrown error reaches the caller as a VmmCallError with its name and message.
 */
import type { GuestCpu, GuestDevices, GuestPages } from './guest-port';
import type { GuestRun } from './guest-run';
import { migrationHandlers } from '../data-plane';

/** A VMM method: takes the request's `params` (untrusted JSON, validate it), resolves to a JSON-able result. */
export type VmmHandler = (params: unknown) => Promise<unknown>;

/**
 * What an extension can reach inside the VMM process. `seed` is the VM's seed (page choice and
 * content). `mode` is how the process started; `status` reports it live, so an extension may set
 * it to 'run' once an incoming VM has taken over. `run` decides whether the guest runs: pause and
 * resume go through its holds and ownership, never through `vcpu` directly (see guest-run.ts).
 * `devices` is the guest's device state, for a hypervisor that has one (QEMU; the simulated guest
 * has none). `log` appends a line to the VMM's log; `shutdown` ends the VMM process (its guest with it).
 */
export interface VmmContext {
  vmId: string;
  seed: number;
  memory: GuestPages;
  vcpu: GuestCpu;
  devices?: GuestDevices;
  /** The pid of the hypervisor process that runs the guest, when it is not this one (QEMU). */
  hypervisorPid?: number;
  /** When the hypervisor last reported the guest stopped and resumed (QEMU's STOP and RESUME events). */
  hypervisorEvents?(): HypervisorEvents;
  /** What the guest itself last reported (a QEMU guest program's heartbeat), for `status`. */
  guestReport?(): GuestReport | undefined;
  /**
   * A guest that checks its own memory: resolves once it has checked all of it again, with what it
   * found (`verify` then answers this instead of reading memory).
   */
  verifyGuest?(): Promise<{ badPages: number; firstBadPages: number[]; checked: number }>;
  run: GuestRun;
  mode: 'run' | 'incoming';
  log(msg: string): void;
  shutdown(why: string): void;
}

/** Times of the hypervisor's last STOP and RESUME events, microseconds since the epoch (its own clock). */
export interface HypervisorEvents {
  lastStopUs?: number;
  lastResumeUs?: number;
}

/** The guest program's own last report (see guest/memwriter.c): its heartbeat, parsed. */
export interface GuestReport {
  seq: number;
  /** Bytes the guest program rewrote since it filled its memory. */
  writtenBytes: number;
  /** Page checks it ran, full passes over its memory, and checks that failed. */
  verifiedPages: number;
  sweeps: number;
  bad: number;
  state: 'ok' | 'CORRUPT';
}

/** Returns the extra methods of the VMM process, by name: the migration engine's `migration.*`. */
export function registerExtensions(ctx: VmmContext): Record<string, VmmHandler> {
  return migrationHandlers(ctx);
}
