/**
 * A real QEMU (TCG) guest booted from the image infra/qemu builds: the guest program's heartbeats
 * and self-check, QMP stop/cont over the shared-memory RAM file, and the device-state-only
 * handover ferry will use (x-ignore-shared, the RAM copied by the host, `cont` on the destination).
 * The file installs QEMU itself (infra/qemu/setup-qemu.sh) and skips only where that fails.
 * Figures (boot time, device-state bytes, migrate time) are printed for the record.
 */
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  buildGuestImage,
  guestKernelCommandLine,
  maxGuestFillMib,
  qemuSetupFailureSync,
  type GuestImage,
} from '../../infra/qemu';
import {
  enableDeviceStateOnly,
  migrateDeviceState,
  QemuProcess,
  startIncoming,
  waitForMigrationEnd,
  type GuestHeartbeat,
  type QemuProcessOptions,
} from '../../vmm/qemu';
import { copyInPlace, differingPages, flipBytes, hashFile, nonZeroPages, steadyRandomPages } from './support/ram-files';

jest.setTimeout(90_000);

const MEMORY_MIB = 128;
const WORKLOAD = { fillMib: maxGuestFillMib(MEMORY_MIB), hotMib: 16, rateMbPerSec: 50, verifyMbPerSec: 64 };
const BOOT_TIMEOUT_MS = 60_000;

const setupFailure = qemuSetupFailureSync();
if (setupFailure !== undefined) console.warn(`skipping the QEMU guest tests: ${setupFailure}`);
const qemuIt = setupFailure === undefined ? it : it.skip;

/** A unix-socket relay that counts the bytes it carries from clients to `target`. */
function countingRelay(listenPath: string, target: string): Promise<{ bytes: () => number; close: () => void }> {
  let bytes = 0;
  const server = net.createServer((client) => {
    const upstream = net.createConnection({ path: target });
    client.on('data', (chunk: Buffer) => (bytes += chunk.length));
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  return new Promise((resolve) =>
    server.listen(listenPath, () => resolve({ bytes: () => bytes, close: () => server.close() })),
  );
}

/** The inodes of the sockets process `pid` holds open. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`, 'utf8');
    } catch {
      continue; // closed between the listing and the read
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m?.[1] !== undefined) inodes.add(m[1]);
  }
  return inodes;
}

/** Inodes of the sockets listed in a /proc/net table (tcp, udp, raw...: inode is column 10). */
function inetSocketInodes(): Set<string> {
  const inodes = new Set<string>();
  for (const table of ['tcp', 'tcp6', 'udp', 'udp6', 'raw', 'raw6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const inode = line.trim().split(/\s+/)[9];
      if (inode !== undefined) inodes.add(inode);
    }
  }
  return inodes;
}

function expectIntact(hb: GuestHeartbeat): void {
  expect({ state: hb.state, bad: hb.bad }).toEqual({ state: 'ok', bad: 0 });
}

describe('QEMU guest', () => {
  let image: GuestImage;
  let root: string;
  const launched: QemuProcess[] = [];

  beforeAll(async () => {
    if (setupFailure !== undefined) return;
    image = await buildGuestImage();
    // Short: the QMP and migration sockets live under it (unix socket paths are limited to 107 bytes).
    root = mkdtempSync('/tmp/ferry-qemu-');
  });

  afterEach(async () => {
    for (const vm of launched.splice(0)) await vm.destroy();
  });

  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  async function launch(name: string, options: Partial<QemuProcessOptions> = {}): Promise<QemuProcess> {
    const vm = await QemuProcess.launch({
      vmId: name,
      stateDir: path.join(root, name),
      memoryMib: MEMORY_MIB,
      kernelPath: image.kernelPath,
      initrdPath: image.initrdPath,
      kernelCommandLine: guestKernelCommandLine(WORKLOAD),
      ...options,
    });
    launched.push(vm);
    return vm;
  }

  qemuIt(
    'boots a 128 MiB guest that prints heartbeats, verifies its memory and listens on unix sockets only',
    async () => {
      const started = Date.now();
      const vm = await launch('boot');
      const first = await vm.waitForHeartbeat(undefined, { timeoutMs: BOOT_TIMEOUT_MS });
      const bootMs = Date.now() - started;
      const swept = await vm.waitForHeartbeat((hb) => hb.sweeps >= 2, { description: 'two full verification passes' });

      expectIntact(first);
      expectIntact(swept);
      expect(swept.seq).toBeGreaterThan(first.seq);
      expect(swept.writtenBytes).toBeGreaterThan(first.writtenBytes);
      expect(swept.verifiedPages).toBeGreaterThanOrEqual(2 * WORKLOAD.fillMib * 256);

      const held = socketInodes(vm.pid);
      const inet = inetSocketInodes();
      expect(held.size).toBeGreaterThan(0);
      expect([...held].filter((inode) => inet.has(inode))).toEqual([]);
      await expect(vm.qmp.execute('no-such-command')).rejects.toMatchObject({
        name: 'QmpCommandError',
        command: 'no-such-command',
        errorClass: 'CommandNotFound',
      });
      console.log(
        `[qemu-guest] boot to first heartbeat: ${bootMs} ms (guest ${MEMORY_MIB} MiB, fill ${WORKLOAD.fillMib} MiB); ` +
          `QEMU ${vm.qmp.version.major}.${vm.qmp.version.minor}.${vm.qmp.version.micro}`,
      );
    },
  );

  qemuIt('leaves the RAM file untouched while stopped and carries on where it was after cont', async () => {
    const vm = await launch('stopcont');
    await vm.waitForHeartbeat((hb) => hb.seq >= 3, { timeoutMs: BOOT_TIMEOUT_MS });

    const stopped = await vm.stop();
    expect(stopped?.event).toBe('STOP');
    vm.flushConsole();
    const lastBeforeStop = vm.lastHeartbeat;
    const before = hashFile(vm.ramPath);
    await expect(vm.waitForHeartbeat(undefined, { timeoutMs: 1_000 })).rejects.toMatchObject({
      name: 'QemuTimeoutError',
    });
    expect(hashFile(vm.ramPath)).toBe(before);
    expect((await vm.status()).status).toBe('paused');

    const next = vm.waitForHeartbeat();
    const resumed = await vm.cont();
    expect(resumed?.event).toBe('RESUME');
    const after = await next;
    expect(after.seq).toBe((lastBeforeStop?.seq ?? -1) + 1);
    expectIntact(after);
    expect(hashFile(vm.ramPath)).not.toBe(before);
  });

  qemuIt(
    'reports CORRUPT when bytes of its memory are changed behind its back, and fails waiters when QEMU dies',
    async () => {
      const vm = await launch('corrupt');
      const settled = await vm.waitForHeartbeat((hb) => hb.seq >= 3, { timeoutMs: BOOT_TIMEOUT_MS });
      const earlier = readFileSync(vm.ramPath);
      await vm.waitForHeartbeat((hb) => hb.seq >= settled.seq + 10);
      await vm.stop();
      // Random-looking pages the guest did not rewrite in the last second: its cold buffer, its hash
      // table, and some leftovers of the boot that nobody checks. 16 of them make a hit near certain.
      const candidates = steadyRandomPages(vm.ramPath, earlier);
      expect(candidates.length).toBeGreaterThan(1000);
      const step = Math.floor(candidates.length / 16);
      flipBytes(
        vm.ramPath,
        Array.from({ length: 16 }, (_, i) => candidates[i * step]!),
      );

      const corrupt = vm.waitForHeartbeat((hb) => hb.state === 'CORRUPT', { description: 'state=CORRUPT' });
      await vm.cont();
      const found = await corrupt;
      expect(found.bad).toBeGreaterThan(0);
      console.log(
        `[qemu-guest] 16 bytes flipped among ${candidates.length} steady random-looking pages: ` +
          `the guest reported CORRUPT (bad=${found.bad}) at heartbeat ${found.seq}`,
      );

      const never = vm.waitForHeartbeat(() => false, { timeoutMs: 30_000 });
      await vm.kill();
      await expect(never).rejects.toMatchObject({ name: 'QemuProcessError', reason: 'exited' });
    },
  );

  qemuIt(
    'hands a stopped guest to a destination QEMU with device state only, its memory identical page by page',
    async () => {
      const source = await launch('src');
      await source.waitForHeartbeat((hb) => hb.sweeps >= 1, { timeoutMs: BOOT_TIMEOUT_MS });
      const destination = await launch('dst', { incoming: true });
      const touchedByFreshDestination = nonZeroPages(destination.ramPath);
      await enableDeviceStateOnly(source.qmp);
      await enableDeviceStateOnly(destination.qmp);

      const stopEvent = await source.stop();
      source.flushConsole();
      const lastOnSource = source.lastHeartbeat;
      expect(lastOnSource).toBeDefined();
      expectIntact(lastOnSource!);

      // Stands in for ferry's page engine: the stopped source's RAM into the destination's, in place.
      const copyStarted = Date.now();
      copyInPlace(source.ramPath, destination.ramPath);
      const copyMs = Date.now() - copyStarted;

      const incomingSocket = path.join(root, 'dst', 'migrate.sock');
      await startIncoming(destination.qmp, `unix:${incomingSocket}`);
      const relay = await countingRelay(path.join(root, 'relay.sock'), incomingSocket);
      const destinationDone = waitForMigrationEnd(destination.qmp);
      const migrateStarted = Date.now();
      const migration = await migrateDeviceState(source.qmp, `unix:${path.join(root, 'relay.sock')}`);
      const migrateMs = Date.now() - migrateStarted;
      await destinationDone;
      relay.close();

      expect((await destination.status()).status).toBe('paused');
      expect(differingPages(source.ramPath, destination.ramPath)).toEqual([]);

      const continued = destination.waitForHeartbeat();
      const resumeEvent = await destination.cont();
      const firstOnDestination = await continued;
      expect(firstOnDestination.seq).toBeGreaterThan(lastOnSource!.seq);
      expect(firstOnDestination.seq).toBeLessThanOrEqual(lastOnSource!.seq + 2);
      expect(firstOnDestination.writtenBytes).toBeGreaterThanOrEqual(lastOnSource!.writtenBytes);
      expectIntact(firstOnDestination);
      // Two more completed passes: one whole pass over the buffer ran entirely on the destination.
      const verified = await destination.waitForHeartbeat((hb) => hb.sweeps >= firstOnDestination.sweeps + 2, {
        description: 'two full verification passes after resume',
      });
      expectIntact(verified);
      expect((await source.status()).status).toBe('postmigrate');

      console.log(
        `[qemu-guest] handover: device state ${relay.bytes()} bytes through the relay, migrate ${migrateMs} ms ` +
          `(QEMU: total ${migration.totalTimeMs} ms, downtime ${migration.downtimeMs} ms, setup ${migration.setupTimeMs} ms, ` +
          `ram ${migration.ramTransferredBytes} bytes); RAM copy ${copyMs} ms for ${MEMORY_MIB} MiB; ` +
          `STOP→RESUME ${((resumeEvent!.timestampUs - stopEvent!.timestampUs) / 1000).toFixed(1)} ms (includes the copy); ` +
          `pages a fresh destination had written before the copy: ${touchedByFreshDestination}`,
      );
    },
  );
});
