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
import type { GuestCpu, GuestPages } from './guest-port';
import type { GuestRun } from './guest-run';
import { migrationHandlers } from '../data-plane';

/** A VMM method: takes the request's `params` (untrusted JSON, validate it), resolves to a JSON-able result. */
export type VmmHandler = (params: unknown) => Promise<unknown>;

/**
 * What an extension can reach inside the VMM process. `seed` is the VM's seed (page choice and
 * content). `mode` is how the process started; `status` reports it live, so an extension may set
 * it to 'run' once an incoming VM has taken over. `run` decides whether the guest runs: pause and
 * resume go through its holds and ownership, never through `vcpu` directly (see guest-run.ts).
 * `log` appends a line to the VMM's log; `shutdown` ends the VMM process (its guest with it).
 */
export interface VmmContext {
  vmId: string;
  seed: number;
  memory: GuestPages;
  vcpu: GuestCpu;
  run: GuestRun;
  mode: 'run' | 'incoming';
  log(msg: string): void;
  shutdown(why: string): void;
}

/** Returns the extra methods of the VMM process, by name: the migration engine's `migration.*`. */
export function registerExtensions(ctx: VmmContext): Record<string, VmmHandler> {
  return migrationHandlers(ctx);
}
