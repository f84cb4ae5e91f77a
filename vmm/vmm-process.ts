/**
 * Entry point of a VMM process, one per VM (see vmm-args.ts for the command line):
 *
 *   node dist/vmm/vmm-process.js --vm-id v1 --pages 262144 --socket /…/v1.sock --mode run
 *
 * Mode `run` writes every page (or the first fill-ratio share) once with generation 1, clears the
 * dirty log and starts the vCPU running. Mode `incoming` leaves memory zeroed and the vCPU paused,
 * waiting for a migration. Either way the process then serves its control socket, built-in
 * methods plus those of `registerExtensions`, and exits cleanly (socket removed) on `shutdown`,
 * SIGTERM or SIGINT. It is meant to be started detached, so its parent's death does not touch it;
 * it logs to stdout, which the launcher points at a file.
 */
import { rmSync } from 'node:fs';
import { GuestMemory } from './guest-memory';
import { GuestRun } from './guest-run';
import { registerExtensions } from './extensions';
import type { VmmContext, VmmHandler } from './extensions';
import { fillPages } from './memory-fill';
import { parseVmmArgs } from './vmm-args';
import { BUILTIN_METHODS, createBuiltinMethods } from './vmm-methods';
import { startVmmServer } from './vmm-server';
import { Vcpu } from './vcpu';

async function main(): Promise<void> {
  const opts = parseVmmArgs(process.argv.slice(2));
  const log = (msg: string): void => {
    process.stdout.write(`${new Date().toISOString()} [vm=${opts.vmId} pid=${process.pid}] ${msg}\n`);
  };
  log(`starting: mode=${opts.mode} pages=${opts.pageCount} workload=${JSON.stringify(opts.workload)}`);

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
  const vcpu = Vcpu.start(memory, opts.workload, opts.seed, { paused: opts.mode === 'incoming' });
  const run = new GuestRun(vcpu, opts.vmId, opts.mode === 'run');
  const ctx: VmmContext = {
    vmId: opts.vmId,
    seed: opts.seed,
    memory,
    vcpu,
    run,
    mode: opts.mode,
    log,
    shutdown: (why) => shutdown(why),
  };

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

main().catch((err: unknown) => {
  process.stderr.write(
    `${new Date().toISOString()} VMM failed to start: ${err instanceof Error ? err.stack : String(err)}\n`,
  );
  process.exit(1);
});
