/**
 * Entry point of a VMM process, one per VM (see vmm-args.ts for the command line):
 *
 *   node dist/vmm/vmm-process.js --vm-id v1 --pages 262144 --socket /…/v1.sock --mode run
 *
 * The guest is ferry's simulated one, or with `--driver qemu` a Linux guest in QEMU that this
 * process starts and serves (vmm/qemu/qemu-guest.ts); either way the migration engine sees the same
 * guest port (guest-port.ts). Simulated: mode `run` writes every page (or the first fill-ratio
 * share) once with generation 1, clears the dirty log and starts the vCPU running; mode `incoming`
 * leaves memory zeroed and the vCPU paused, waiting for a migration. QEMU: `run` boots the guest
 * program, `incoming` starts QEMU paused, waiting. Either way the process then serves its control
 * socket, built-in methods plus those of `registerExtensions`, and exits cleanly (socket removed)
 * on `shutdown`, SIGTERM or SIGINT, or when its QEMU exits. It is meant to be started detached, so its parent's death does not touch it;
 * it logs to stdout, which the launcher points at a file.
 */
import { rmSync } from 'node:fs';
import { GuestMemory } from './guest-memory';
import type { GuestCpu, GuestDevices, GuestPages } from './guest-port';
import { GuestRun } from './guest-run';
import { registerExtensions } from './extensions';
import type { GuestReport, HypervisorEvents, VmmContext, VmmHandler } from './extensions';
import { fillPages } from './memory-fill';
import { startQemuGuest } from './qemu/qemu-guest';
import { parseVmmArgs, type VmmProcessOptions } from './vmm-args';
import { BUILTIN_METHODS, createBuiltinMethods } from './vmm-methods';
import { startVmmServer } from './vmm-server';
import { Vcpu } from './vcpu';

async function main(): Promise<void> {
  const opts = parseVmmArgs(process.argv.slice(2));
  const log = (msg: string): void => {
    process.stdout.write(`${new Date().toISOString()} [vm=${opts.vmId} pid=${process.pid}] ${msg}\n`);
  };
  log(`starting: mode=${opts.mode} pages=${opts.pageCount} workload=${JSON.stringify(opts.workload)}`);

  const guest = opts.driver === 'qemu' ? await startQemu(opts, log) : await startSimulated(opts, log);
  const { vcpu } = guest;
  const run = new GuestRun(vcpu, opts.vmId, opts.mode === 'run');
  const ctx: VmmContext = {
    vmId: opts.vmId,
    seed: opts.seed,
    memory: guest.memory,
    vcpu,
    ...(guest.devices ? { devices: guest.devices } : {}),
    ...(guest.report ? { guestReport: guest.report } : {}),
    ...(guest.verify ? { verifyGuest: guest.verify } : {}),
    ...(guest.pid !== undefined ? { hypervisorPid: guest.pid } : {}),
    ...(guest.events ? { hypervisorEvents: guest.events } : {}),
    run,
    mode: opts.mode,
    log,
    shutdown: (why) => shutdown(why),
  };
  // A QEMU that exits (a guest that panicked or powered off, a kill) takes the VM with it.
  guest.exited?.then(
    (why) => shutdown(why),
    () => undefined,
  );

  const extensions = registerExtensions(ctx);
  const clash = Object.keys(extensions).filter((name) => (BUILTIN_METHODS as readonly string[]).includes(name));
  if (clash.length > 0) throw new Error(`extensions may not redefine built-in VMM methods: ${clash.join(', ')}`);
  const handlers: Record<string, VmmHandler> = {
    ...createBuiltinMethods(ctx, { pid: process.pid, shutdown: () => shutdown('shutdown requested') }),
    ...extensions,
  };
  const server = startVmmServer({ socketPath: opts.socketPath, vmId: opts.vmId, handlers, log });

  let shuttingDown = false;
  const shutdown = (why: string): void => {
    if (shuttingDown) return;
    shuttingDown = true;
    log(`shutting down: ${why}`);
    void (async () => {
      await vcpu.stop();
      await guest.destroy?.().catch((err: unknown) => log(`stopping the guest failed: ${String(err)}`));
      await server.then(
        (listening) => listening.close(),
        () => undefined,
      );
      log('stopped');
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // Detached from any terminal, but a stray hangup must not kill the guest either.
  process.on('SIGHUP', () => log('ignoring SIGHUP'));

  await server;
  // However the process ends from here on, do not leave a socket file for the next one to trip on.
  process.on('exit', () => rmSync(opts.socketPath, { force: true }));
  log(`serving ${opts.socketPath} (methods: ${Object.keys(handlers).join(', ')})`);
}

/** How long `verify` waits for a QEMU guest program to check all its memory again (ms). */
const QEMU_VERIFY_TIMEOUT_MS = 60_000;

/** What the VMM runs: the guest port's objects, and for a QEMU guest how it ends. */
interface StartedGuest {
  memory: GuestPages;
  vcpu: GuestCpu;
  devices?: GuestDevices;
  report?: () => GuestReport | undefined;
  pid?: number;
  events?: () => HypervisorEvents;
  verify?: () => Promise<{ badPages: number; firstBadPages: number[]; checked: number }>;
  /** Resolves (with why) if the guest ends by itself. */
  exited?: Promise<string>;
  destroy?: () => Promise<void>;
}

/** ferry's simulated guest: memory in this process, its vCPU a worker thread. */
async function startSimulated(opts: VmmProcessOptions, log: (msg: string) => void): Promise<StartedGuest> {
  const memory = GuestMemory.create(opts.pageCount);
  if (opts.mode === 'run') {
    const started = performance.now();
    const filled = Math.floor(opts.pageCount * opts.fillRatio);
    await fillPages(memory, { pageCount: filled, generation: 1, seed: opts.seed });
    memory.collectDirty();
    log(`filled ${filled} pages in ${(performance.now() - started).toFixed(0)} ms`);
  } else {
    // Like QEMU's -mem-prealloc on a migration target: fault guest RAM in now, so receiving pages
    // later costs a copy, not a page fault and a kernel zero-fill per page.
    const started = performance.now();
    memory.prefault();
    log(`pre-allocated ${opts.pageCount} pages in ${(performance.now() - started).toFixed(0)} ms`);
  }
  return { memory, vcpu: Vcpu.start(memory, opts.workload, opts.seed, { paused: opts.mode === 'incoming' }) };
}

/** A Linux guest in QEMU (vmm/qemu/qemu-guest.ts). */
async function startQemu(opts: VmmProcessOptions, log: (msg: string) => void): Promise<StartedGuest> {
  const guest = await startQemuGuest({ ...opts, log });
  const events: HypervisorEvents = {};
  guest.qemu.qmp.events.subscribe((e) => {
    if (e.event === 'STOP') events.lastStopUs = e.timestampUs;
    if (e.event === 'RESUME') events.lastResumeUs = e.timestampUs;
  });
  return {
    memory: guest.memory,
    vcpu: guest.vcpu,
    devices: guest.devices,
    pid: guest.qemu.pid,
    events: () => ({ ...events }),
    report: () => {
      const hb = guest.qemu.lastHeartbeat;
      if (!hb) return undefined;
      const { seq, writtenBytes, verifiedPages, sweeps, bad, state } = hb;
      return { seq, writtenBytes, verifiedPages, sweeps, bad, state };
    },
    verify: async () => {
      // The guest program re-checks all its memory in sweeps: wait for one that started after now.
      const from = guest.qemu.lastHeartbeat?.sweeps ?? 0;
      const hb = await guest.qemu.waitForHeartbeat((h) => h.sweeps >= from + 2 || h.bad > 0, {
        timeoutMs: QEMU_VERIFY_TIMEOUT_MS,
        description: 'a full check of its memory',
      });
      return { badPages: hb.bad, firstBadPages: [], checked: hb.verifiedPages };
    },
    exited: guest.qemu.exited.then((exit) => `QEMU exited (${exit.signal ?? `code ${String(exit.code)}`})`),
    destroy: () => guest.destroy(),
  };
}

main().catch((err: unknown) => {
  process.stderr.write(
    `${new Date().toISOString()} VMM failed to start: ${err instanceof Error ? err.stack : String(err)}\n`,
  );
  process.exit(1);
});
