/**
 * One run of QEMU's own migration, beside which ferry's is measured: two QEMUs launched directly
 * (vmm/qemu QemuProcess, guest RAM in the usual shared-memory file but WITHOUT `x-ignore-shared`,
 * so QEMU sends the RAM itself), a fresh source running the guest program, a destination started
 * `-incoming defer -S`, the RAM over loopback TCP with `downtime-limit` 300 ms and the bandwidth
 * unlimited (QEMU_OWN_MAX_BANDWIDTH).
 *
 * Measured as ferry's is: total from the `migrate` command to the destination's RESUME event,
 * downtime from the source's STOP event to that RESUME (QEMU's event timestamps, one machine).
 * The destination is held paused after the migration completed while the bench copies its RAM
 * file (the image QEMU would resume), then `cont`; that hold (`holdMs`, from the bench seeing the
 * destination's MIGRATION completed to its `cont`) is the bench's own and is taken out of total
 * and downtime, which is what an immediate `cont` would have measured. The raw figures are kept.
 * The copy is compared page by page with the stopped source's RAM file, and the destination is
 * watched for WATCH_MS: heartbeats, the guest program's state, a kernel panic, QEMU exiting.
 *
 * Both QEMUs are destroyed (RAM files removed) before this returns, whatever happened; a failure
 * is returned as `error` with what was measured until then.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pickFreePort } from '../infra/ports';
import type { GuestImage } from '../infra/qemu';
import { QemuProcess, waitForMigrationEnd, type GuestHeartbeat } from '../vmm/qemu';
import { differingPagesOf, nowUs, readWhole, watchGuest, type GuestAfterResume } from './qemu-guest-watch';

/** `max-bandwidth` for QEMU's own migration, bytes/s: 1 PB/s, i.e. unlimited on loopback. */
export const QEMU_OWN_MAX_BANDWIDTH = 1e15;
/** `downtime-limit` for QEMU's own migration, ms (the figure). */
export const QEMU_OWN_DOWNTIME_LIMIT_MS = 300;
/** How long the migration itself may take before the run is recorded as failed, ms. */
const MIGRATION_TIMEOUT_MS = 180_000;

/** What the run needs: the guest image, its kernel command line, where to put state. */
export interface QemuOwnRunInput {
  run: number;
  image: GuestImage;
  memoryMib: number;
  kernelCommandLine: string;
  /** A folder for the QEMUs' state folders (short: their QMP sockets live there). */
  root: string;
  /** Heartbeats the source prints (after its fill) before the migration starts. */
  warmHeartbeats: number;
  bootTimeoutMs: number;
}

/** What one run of QEMU's own migration measured; see the module comment. */
export interface QemuOwnRun {
  run: number;
  ok: boolean;
  error?: string;
  totalMs?: number;
  downtimeMs?: number;
  /** STOP → RESUME including the bench's hold. */
  rawDowntimeMs?: number;
  rawTotalMs?: number;
  holdMs?: number;
  /** query-migrate `ram.transferred` on the source. */
  bytesTransferred?: number;
  /** QEMU's self-reported `total-time` and `downtime` (source side only). */
  qemuReportedTotalMs?: number;
  qemuReportedDowntimeMs?: number;
  /** Pages differing between the stopped source's RAM file and the destination's before `cont`. */
  differingPages?: number;
  firstDifferingPages?: number[];
  /** The source's last heartbeat before its STOP. */
  sourceLastSeq?: number;
  guestAfterResume?: GuestAfterResume;
}

async function launch(input: QemuOwnRunInput, name: string, incoming: boolean): Promise<QemuProcess> {
  return QemuProcess.launch({
    vmId: `qbench-${name}-${input.run}`,
    stateDir: path.join(input.root, `${name}${input.run}`),
    memoryMib: input.memoryMib,
    kernelPath: input.image.kernelPath,
    initrdPath: input.image.initrdPath,
    kernelCommandLine: input.kernelCommandLine,
    incoming,
  });
}

/** Runs QEMU's own migration once; see the module comment. Never throws. */
export async function qemuOwnMigration(input: QemuOwnRunInput): Promise<QemuOwnRun> {
  const figures: QemuOwnRun = { run: input.run, ok: false };
  const launched: QemuProcess[] = [];
  try {
    const source = await launch(input, 'src', false);
    launched.push(source);
    await source.waitForHeartbeat((hb) => hb.seq >= input.warmHeartbeats, {
      timeoutMs: input.bootTimeoutMs,
      description: `${input.warmHeartbeats} heartbeats`,
    });
    const destination = await launch(input, 'dst', true);
    launched.push(destination);
    for (const side of [source, destination])
      await side.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
    await source.qmp.execute('migrate-set-parameters', {
      'downtime-limit': QEMU_OWN_DOWNTIME_LIMIT_MS,
      'max-bandwidth': QEMU_OWN_MAX_BANDWIDTH,
    });
    const uri = `tcp:127.0.0.1:${await pickFreePort()}`;
    await destination.qmp.execute('migrate-incoming', { uri });

    const timeout = { timeoutMs: MIGRATION_TIMEOUT_MS };
    const stops: number[] = [];
    const unsubscribe = source.qmp.events.subscribe((e) => {
      if (e.event === 'STOP') stops.push(e.timestampUs);
    });
    const sourceDone = waitForMigrationEnd(source.qmp, timeout);
    const destinationDone = waitForMigrationEnd(destination.qmp, timeout);
    sourceDone.catch(() => undefined);
    destinationDone.catch(() => undefined);
    const startUs = nowUs();
    await source.qmp.execute('migrate', { uri });
    await destinationDone;
    const completedSeenUs = nowUs();
    // The image QEMU resumes with, taken while the destination is still paused (-S).
    const atResume = readWhole(destination.ramPath);
    const watch = watchGuest(destination);
    const contUs = nowUs();
    const resumed = await destination.cont();
    if (resumed === undefined) throw new Error('the destination was already running after the migration');
    await sourceDone;
    unsubscribe();
    const stopUs = stops[stops.length - 1];
    if (stopUs === undefined) throw new Error('no STOP event from the source');
    const holdUs = contUs - completedSeenUs;
    figures.rawTotalMs = (resumed.timestampUs - startUs) / 1000;
    figures.rawDowntimeMs = (resumed.timestampUs - stopUs) / 1000;
    figures.holdMs = holdUs / 1000;
    figures.totalMs = figures.rawTotalMs - figures.holdMs;
    figures.downtimeMs = figures.rawDowntimeMs - figures.holdMs;

    const info = await source.qmp.execute<{
      'total-time'?: number;
      downtime?: number;
      ram?: { transferred?: number };
    }>('query-migrate');
    figures.bytesTransferred = info.ram?.transferred ?? 0;
    if (info['total-time'] !== undefined) figures.qemuReportedTotalMs = info['total-time'];
    if (info.downtime !== undefined) figures.qemuReportedDowntimeMs = info.downtime;
    source.flushConsole();
    const last: GuestHeartbeat | undefined = source.lastHeartbeat;
    if (last) figures.sourceLastSeq = last.seq;

    const differing = differingPagesOf(source.ramPath, atResume);
    figures.differingPages = differing.length;
    figures.firstDifferingPages = differing.slice(0, 16);
    figures.guestAfterResume = await watch.settle(last);
    figures.ok = true;
  } catch (error) {
    figures.error = (error as Error).message;
  } finally {
    for (const vm of launched) await vm.destroy().catch(() => undefined);
    for (const vm of launched) fs.rmSync(vm.stateDir, { recursive: true, force: true });
  }
  return figures;
}
