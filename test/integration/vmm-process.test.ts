import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fs, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { SimulatedDriver } from '../../vmm/driver';
import { launchVmm } from '../../vmm/launch';
import { waitForVmmExit } from '../../vmm/vm-records';
import type { VmRecord } from '../../vmm/vm-records';
import type { VmmStatus } from '../../vmm/vmm-methods';

jest.setTimeout(30_000);

const MEMORY_BYTES = 8 * 1024 * 1024;

async function waitUntilDead(pid: number, vmId: string): Promise<void> {
  if (!(await waitForVmmExit(pid, vmId, 10_000))) throw new Error(`VMM ${vmId} (pid ${pid}) still alive`);
}

/** A separate Node process (a host agent) that creates a VM through the driver, then exits. */
function spawnLauncher(stateDir: string, vmId: string, memoryBytes: number): ChildProcessByStdio<null, Readable, null> {
  const script = `
    const { SimulatedDriver } = require(${JSON.stringify(path.resolve(__dirname, '../../vmm/driver.js'))});
    new SimulatedDriver({ hostId: 'h1', stateDir: ${JSON.stringify(stateDir)} })
      .createVm({ vmId: ${JSON.stringify(vmId)}, memoryBytes: ${memoryBytes}, workload: { type: 'sweep', rateBytesPerSec: 1e6 } })
      .then((record) => { process.stdout.write(JSON.stringify(record)); process.exit(0); },
            (err) => { console.error(err); process.exit(1); });`;
  return spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
}

function createFromLauncher(stateDir: string, vmId: string): Promise<VmRecord> {
  return new Promise((resolve, reject) => {
    const launcher = spawnLauncher(stateDir, vmId, MEMORY_BYTES);
    let out = '';
    launcher.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    launcher.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out) as VmRecord) : reject(new Error(`launcher exited ${code}`)),
    );
  });
}

describe('VMM process', () => {
  let stateDir: string;
  let driver: SimulatedDriver;

  beforeAll(() => {
    stateDir = mkdtempSync(path.join(tmpdir(), 'ferry-vmm-process-'));
    driver = new SimulatedDriver({ hostId: 'h1', stateDir });
  });

  afterAll(async () => {
    for (const vm of await driver.listVms()) await driver.destroyVm(vm.vmId);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('keeps running after the process that launched it has exited', async () => {
    const record = await createFromLauncher(stateDir, 'vm-orphan');
    const found = await driver.getVm('vm-orphan');
    expect(found?.pid).toBe(record.pid);
    const vm = await driver.control('vm-orphan');
    const first = await vm.call<VmmStatus>('status');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const later = await vm.call<VmmStatus>('status');
    vm.close();
    expect(later.vcpu.state).toBe('running');
    expect(later.vcpu.workUnits).toBeGreaterThan(first.vcpu.workUnits);
    await driver.destroyVm('vm-orphan');
    await waitUntilDead(record.pid, 'vm-orphan');
  });

  it('is found by a restarted agent when the agent was killed while the VM was still filling memory', async () => {
    const launcher = spawnLauncher(stateDir, 'vm-early', 256 * 1024 * 1024);
    const recordPath = path.join(stateDir, 'hosts', 'h1', 'vms', 'vm-early.json');
    while (!existsSync(recordPath)) await new Promise((resolve) => setTimeout(resolve, 2));
    launcher.kill('SIGKILL');
    const restarted = new SimulatedDriver({ hostId: 'h1', stateDir });
    const record = await restarted.getVm('vm-early');
    expect(record?.mode).toBe('run');
    let status: VmmStatus | undefined;
    while (status === undefined) {
      const vm = await restarted.control('vm-early').catch(() => undefined);
      status = await vm?.call<VmmStatus>('status').catch(() => undefined);
      vm?.close();
      if (status === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(status.pid).toBe(record?.pid);
    await restarted.destroyVm('vm-early');
  });

  it('shuts down cleanly on SIGTERM, removing its socket', async () => {
    const record = await driver.createVm({ vmId: 'vm-term', memoryBytes: MEMORY_BYTES, workload: { type: 'idle' } });
    process.kill(record.pid, 'SIGTERM');
    await waitUntilDead(record.pid, 'vm-term');
    expect(existsSync(record.socketPath)).toBe(false);
    const log = await fs.readFile(path.join(stateDir, 'hosts', 'h1', 'vms', 'vm-term.log'), 'utf8');
    expect(log).toMatch(/shutting down: SIGTERM[\s\S]*stopped/);
  });

  it('refuses engine calls whose params are not what the method takes, naming each wrong key', async () => {
    await driver.createVm({ vmId: 'vm-params', memoryBytes: MEMORY_BYTES, workload: { type: 'idle' } });
    const client = await driver.control('vm-params');
    try {
      await expect(
        client.call('migration.sendRound', { migrationId: 'm1', round: -1, storFirst: true }),
      ).rejects.toMatchObject({
        remoteName: 'InvalidInputError',
        message: expect.stringMatching(
          /storFirst is not an option; did you mean storeFirst\?.*round must be an integer/,
        ),
      });
      await expect(client.call('migration.claimOutgoing', { migrationId: '../m1' })).rejects.toMatchObject({
        remoteName: 'InvalidInputError',
        message: expect.stringContaining('migrationId must be'),
      });
      // Nothing was claimed by the refused call: a well-formed one is taken.
      await expect(client.call('migration.claimOutgoing', { migrationId: 'm1' })).resolves.toMatchObject({
        migrationId: 'm1',
      });
    } finally {
      client.close();
    }
  });

  it('reports the tail of the log when a VMM dies before serving', async () => {
    const logPath = path.join(stateDir, 'bad.log');
    await expect(
      launchVmm({ vmId: 'vm-bad', pageCount: 0, socketPath: path.join(stateDir, 'bad.sock'), logPath, mode: 'run' }),
    ).rejects.toMatchObject({
      name: 'VmmLaunchError',
      vmId: 'vm-bad',
      message: expect.stringMatching(
        /exited with code 1 before serving; log tail:[\s\S]*--pages must be a positive integer, got "0"/,
      ),
    });
  });
});
