import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fs, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { SimulatedDriver } from '../../vmm/driver';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import type { VcpuStats } from '../../vmm/vcpu';
import { isVmmAlive, waitForVmmExit } from '../../vmm/vm-records';
import type { VmmClient } from '../../vmm/vmm-client';
import type { VmmStatus, VmmVerifyResult } from '../../vmm/vmm-methods';

jest.setTimeout(30_000);

const MEMORY_BYTES = 16 * 1024 * 1024;
const PAGES = MEMORY_BYTES / PAGE_SIZE_BYTES;

async function waitUntilDead(pid: number, vmId: string): Promise<void> {
  if (!(await waitForVmmExit(pid, vmId, 10_000))) throw new Error(`VMM ${vmId} (pid ${pid}) still alive`);
}

describe('SimulatedDriver', () => {
  let stateDir: string;
  let driver: SimulatedDriver;
  const clients: VmmClient[] = [];
  const control = async (vmId: string): Promise<VmmClient> => {
    const client = await driver.control(vmId);
    clients.push(client);
    return client;
  };

  beforeAll(() => {
    stateDir = mkdtempSync(path.join(tmpdir(), 'ferry-vmm-driver-'));
    driver = new SimulatedDriver({ hostId: 'h1', stateDir });
  });

  afterEach(() => {
    for (const client of clients.splice(0)) client.close();
  });

  afterAll(async () => {
    for (const vm of await driver.listVms()) await driver.destroyVm(vm.vmId);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('creates a running VM whose process answers control calls', async () => {
    const record = await driver.createVm({
      vmId: 'vm-a',
      memoryBytes: MEMORY_BYTES,
      workload: { type: 'hotset', rateBytesPerSec: 8 * 1024 * 1024, hotSetBytes: 1024 * 1024 },
    });
    expect(record).toMatchObject({ vmId: 'vm-a', hostId: 'h1', pageCount: PAGES, mode: 'run' });
    expect(record.socketPath).toBe(path.join(stateDir, 'hosts', 'h1', 'vms', 'vm-a.sock'));
    const vm = await control('vm-a');
    const status = await vm.call<VmmStatus>('status');
    expect(status).toMatchObject({ vmId: 'vm-a', pid: record.pid, pageCount: PAGES, mode: 'run' });
    expect(status.vcpu.state).toBe('running');

    await expect(vm.call<VcpuStats>('setThrottle', { percent: 30 })).resolves.toMatchObject({ throttlePercent: 30 });
    await expect(vm.call<VcpuStats>('pause')).resolves.toMatchObject({ state: 'paused' });
    await expect(vm.call<VmmVerifyResult>('verify')).resolves.toEqual({
      badPages: 0,
      firstBadPages: [],
      checked: PAGES,
    });
    const { digest } = await vm.call<{ digest: string }>('digest');
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    await expect(vm.call('setWorkload', { workload: { type: 'idle' } })).resolves.toEqual({
      workload: { type: 'idle' },
    });
    await expect(vm.call<VcpuStats>('resume')).resolves.toMatchObject({ throttlePercent: 30 });
    await expect(vm.call('setThrottle', { percent: -1 })).rejects.toMatchObject({
      name: 'VmmCallError',
      remoteName: 'VmmParamsError',
      vmId: 'vm-a',
    });
  });

  it("runs each VMM on the driver's own Node, 22 or newer", async () => {
    const record = await driver.createVm({ vmId: 'vm-node', memoryBytes: MEMORY_BYTES, workload: { type: 'idle' } });
    try {
      // The VMM stays up until destroyed below, so its /proc entry cannot vanish meanwhile.
      const vmmNode = await fs.realpath(`/proc/${record.pid}/exe`);
      expect(vmmNode).toBe(await fs.realpath(process.execPath));
      const version = execFileSync(vmmNode, ['-p', 'process.versions.node'], { encoding: 'utf8' });
      expect(Number(version.split('.')[0])).toBeGreaterThanOrEqual(22);
    } finally {
      await driver.destroyVm('vm-node');
    }
  });

  it('refuses a second VM with an id that exists on the host', async () => {
    await expect(
      driver.createVm({ vmId: 'vm-a', memoryBytes: MEMORY_BYTES, workload: { type: 'idle' } }),
    ).rejects.toMatchObject({ name: 'VmExistsError', vmId: 'vm-a', hostId: 'h1' });
    await expect(driver.createVm({ vmId: 'vm-x', memoryBytes: 1000, workload: { type: 'idle' } })).rejects.toThrow(
      'memoryBytes must be a positive multiple of 4096, got 1000',
    );
  });

  it('lets a new driver instance (a restarted agent) find and control the running VM', async () => {
    const before = await driver.getVm('vm-a');
    const restarted = new SimulatedDriver({ hostId: 'h1', stateDir });
    const found = await restarted.getVm('vm-a');
    expect(found).toEqual(before);
    expect((await restarted.listVms()).map((vm) => vm.vmId)).toContain('vm-a');
    const vm = await restarted.control('vm-a');
    clients.push(vm);
    await expect(vm.call<VmmStatus>('status')).resolves.toMatchObject({ pid: before?.pid });
  });

  it('memory dumped by a VM is whole and agrees with its digest', async () => {
    const vm = await control('vm-a');
    await vm.call('pause');
    const dumpPath = path.join(stateDir, 'vm-a.mem');
    await vm.call('dumpMemory', { path: dumpPath });
    const { digest } = await vm.call<{ digest: string }>('digest');
    await vm.call('resume');
    const dump = await fs.readFile(dumpPath);
    expect(dump.length).toBe(MEMORY_BYTES);
    const copy = GuestMemory.create(PAGES);
    for (let i = 0; i < PAGES; i += 1) {
      expect(copy.applyPage(i, dump.subarray(i * PAGE_SIZE_BYTES, (i + 1) * PAGE_SIZE_BYTES))).toBe(true);
    }
    expect(copy.digest()).toBe(digest);
  });

  it('prepares a zeroed, paused incoming VM once, however often it is asked', async () => {
    const first = await driver.prepareIncoming('vm-in', MEMORY_BYTES);
    const again = await driver.prepareIncoming('vm-in', MEMORY_BYTES);
    expect(again).toEqual(first);
    const vm = await control('vm-in');
    const status = await vm.call<VmmStatus>('status');
    expect(status).toMatchObject({ mode: 'incoming', vcpu: { state: 'paused', pagesWritten: 0 } });
    const { digest } = await vm.call<{ digest: string }>('digest');
    expect(digest).toBe(GuestMemory.create(PAGES).digest());
    await expect(driver.prepareIncoming('vm-in', 2 * MEMORY_BYTES)).rejects.toMatchObject({ name: 'VmExistsError' });
    await expect(driver.prepareIncoming('vm-a', MEMORY_BYTES)).rejects.toMatchObject({ name: 'VmExistsError' });

    await driver.markRunning('vm-in');
    expect(await driver.getVm('vm-in')).toMatchObject({ mode: 'run', pid: first.pid });
    await expect(driver.prepareIncoming('vm-in', MEMORY_BYTES)).rejects.toMatchObject({ name: 'VmExistsError' });
  });

  it('destroys a VM: its process exits, its record and socket go, and destroying again succeeds', async () => {
    const record = await driver.getVm('vm-in');
    if (record === undefined) throw new Error('vm-in should exist');
    await driver.destroyVm('vm-in');
    expect(isVmmAlive(record.pid, 'vm-in')).toBe(false);
    expect(existsSync(record.socketPath)).toBe(false);
    expect(await driver.getVm('vm-in')).toBeUndefined();
    await expect(driver.destroyVm('vm-in')).resolves.toBeUndefined();
    await expect(driver.control('vm-in')).rejects.toMatchObject({ name: 'VmNotFoundError', vmId: 'vm-in' });
  });

  it('forgets a VM whose process was killed', async () => {
    const record = await driver.createVm({ vmId: 'vm-k', memoryBytes: MEMORY_BYTES, workload: { type: 'idle' } });
    process.kill(record.pid, 'SIGKILL');
    await waitUntilDead(record.pid, 'vm-k');
    expect(await driver.getVm('vm-k')).toBeUndefined();
    expect(existsSync(path.join(stateDir, 'hosts', 'h1', 'vms', 'vm-k.json'))).toBe(false);
    expect((await driver.listVms()).map((vm) => vm.vmId)).toEqual(['vm-a']);
  });
});
