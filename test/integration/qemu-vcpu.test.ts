/**
 * QemuVcpu over a real QEMU (TCG) guest of 128 MiB running the guest program at 150 MB/s: pause
 * and resume seen in the guest's heartbeats, the throttle seen in its write rate (figures printed),
 * pause holding through throttle slices, and the cgroup means creating and removing its group.
 * One guest serves every test; each test leaves it running and unthrottled.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import {
  buildGuestImage,
  guestKernelCommandLine,
  maxGuestFillMib,
  qemuSetupFailureSync,
  type GuestImage,
} from '../../infra/qemu';
import type { Workload } from '../../vmm';
import {
  cpuCgroupWritable,
  DEFAULT_CPU_CGROUP_ROOT,
  memwriterArgs,
  QemuProcess,
  QemuVcpu,
  vcpuThreadIds,
  type GuestHeartbeat,
} from '../../vmm/qemu';

jest.setTimeout(60_000);

const MEMORY_MIB = 128;
const WORKLOAD: Workload = { type: 'hotset', rateBytesPerSec: 150e6, hotSetBytes: 16 * 1024 * 1024 };
const QUIET_MS = 1_500;

const setupFailure = qemuSetupFailureSync();
if (setupFailure !== undefined) console.warn(`skipping the QemuVcpu tests: ${setupFailure}`);
const qemuIt = setupFailure === undefined ? it : it.skip;
const cgroupIt = setupFailure === undefined && cpuCgroupWritable() ? it : it.skip;

/** Write rate over the next `count` heartbeats, bytes per wall-clock second. */
async function writeRate(vm: QemuProcess, count: number): Promise<{ bytesPerSec: number; maxGapMs: number }> {
  const seen: Array<{ at: number; hb: GuestHeartbeat }> = [];
  const unsubscribe = vm.console.subscribe((m) => {
    if (m.type === 'heartbeat') seen.push({ at: performance.now(), hb: m });
  });
  try {
    const first = await vm.waitForHeartbeat();
    await vm.waitForHeartbeat((hb) => hb.seq >= first.seq + count, { description: `${count} heartbeats` });
  } finally {
    unsubscribe();
  }
  const a = seen[0]!;
  const b = seen[seen.length - 1]!;
  const gaps = seen.slice(1).map((s, i) => s.at - seen[i]!.at);
  return {
    bytesPerSec: ((b.hb.writtenBytes - a.hb.writtenBytes) * 1000) / (b.at - a.at),
    maxGapMs: Math.max(...gaps),
  };
}

/** Resolves when `vm` printed no heartbeat for `ms` (rejects on one): the guest is held. */
async function expectNoHeartbeatFor(vm: QemuProcess, ms: number): Promise<void> {
  vm.flushConsole();
  const last = vm.lastHeartbeat?.seq ?? -1;
  await expect(vm.waitForHeartbeat((hb) => hb.seq > last, { timeoutMs: ms })).rejects.toMatchObject({
    name: 'QemuTimeoutError',
  });
}

describe('QemuVcpu', () => {
  let root: string;
  let image: GuestImage;
  let vm: QemuProcess;

  async function launch(vmId: string): Promise<QemuProcess> {
    const launched = await QemuProcess.launch({
      vmId,
      stateDir: path.join(root, vmId),
      memoryMib: MEMORY_MIB,
      kernelPath: image.kernelPath,
      initrdPath: image.initrdPath,
      kernelCommandLine: guestKernelCommandLine(memwriterArgs(WORKLOAD, maxGuestFillMib(MEMORY_MIB))),
    });
    await launched.waitForHeartbeat((hb) => hb.seq >= 3, { timeoutMs: 40_000 });
    return launched;
  }

  beforeAll(async () => {
    if (setupFailure !== undefined) return;
    image = await buildGuestImage();
    root = mkdtempSync('/tmp/ferry-qvcpu-');
    vm = await launch('vcpu');
  });

  afterAll(async () => {
    await vm?.destroy();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  qemuIt('pauses the guest until resume, with no heartbeat in between, and reports the state', async () => {
    const vcpu = new QemuVcpu(vm, { workload: WORKLOAD });
    await vcpu.pause();
    expect(vcpu.stats().state).toBe('paused');
    expect((await vm.status()).running).toBe(false);
    vm.flushConsole();
    const last = vm.lastHeartbeat!;
    await expectNoHeartbeatFor(vm, QUIET_MS);

    const next = vm.waitForHeartbeat();
    vcpu.resume();
    expect(vcpu.stats().state).toBe('running');
    expect((await next).seq).toBe(last.seq + 1);
    const stats = vcpu.stats();
    expect(stats.pagesWritten).toBe(Math.floor(vm.lastHeartbeat!.writtenBytes / 4096));
    expect(stats.workUnits).toBeGreaterThan(stats.pagesWritten);
    await vcpu.stop();
    expect(vcpu.stats().state).toBe('stopped');
    expect((await vm.status()).running).toBe(true);
  });

  qemuIt('roughly halves the guest write rate at a 50% throttle and counts the throttled time', async () => {
    const vcpu = new QemuVcpu(vm, { workload: WORKLOAD });
    const free = await writeRate(vm, 15);
    vcpu.setThrottle(50);
    await vm.waitForHeartbeat();
    const before = vcpu.stats();
    const throttled = await writeRate(vm, 10);
    const after = vcpu.stats();
    vcpu.setThrottle(0);
    await vcpu.stop();

    const throttledMs = after.throttledMs - before.throttledMs;
    const share = throttledMs / (throttledMs + after.runMs - before.runMs);
    const ratio = throttled.bytesPerSec / free.bytesPerSec;
    console.log(
      `[qemu-vcpu] ${vcpu.throttleMeans} throttle 50%: ${(throttled.bytesPerSec / 1e6).toFixed(1)} MB/s ` +
        `(max heartbeat gap ${throttled.maxGapMs.toFixed(0)} ms) vs ${(free.bytesPerSec / 1e6).toFixed(1)} MB/s ` +
        `unthrottled (gap ${free.maxGapMs.toFixed(0)} ms): ${(100 * ratio).toFixed(0)}%; ` +
        `descheduled share ${(100 * share).toFixed(1)}%`,
    );
    expect(after.throttlePercent).toBe(50);
    expect(ratio).toBeLessThan(0.75);
    expect(ratio).toBeGreaterThan(0.25);
    expect(share).toBeGreaterThan(0.35);
    expect(share).toBeLessThan(0.65);
  });

  qemuIt('keeps a guest paused during a throttle paused through its slices, then throttles it again', async () => {
    const vcpu = new QemuVcpu(vm, { workload: WORKLOAD });
    vcpu.setThrottle(50);
    await vm.waitForHeartbeat();
    await vcpu.pause();
    const atPause = vcpu.stats();
    await expectNoHeartbeatFor(vm, QUIET_MS);
    const paused = vcpu.stats();
    expect(paused).toMatchObject({ state: 'paused', throttlePercent: 50 });
    expect(paused.throttledMs).toBe(atPause.throttledMs);
    expect(paused.runMs).toBe(atPause.runMs);
    expect((await vm.status()).running).toBe(false);

    const last = vm.lastHeartbeat!.seq;
    vcpu.resume();
    const next = await vm.waitForHeartbeat((hb) => hb.seq > last);
    expect(next.seq).toBe(last + 1);
    await vm.waitForHeartbeat((hb) => hb.seq >= next.seq + 3);
    expect(vcpu.stats().throttledMs).toBeGreaterThan(paused.throttledMs + 100);
    await vcpu.stop();
    expect((await vm.status()).running).toBe(true);
    expect(vcpu.lastError).toBeUndefined();
  });

  cgroupIt('puts only the vCPU thread in its own cpu cgroup and removes the group on stop', async () => {
    const cpuGroupOf = (tid: number): string | undefined =>
      /^\d+:(?:[^:]*,)?cpu(?:,[^:]*)?:(.*)$/m.exec(readFileSync(`/proc/${vm.pid}/task/${tid}/cgroup`, 'utf8'))?.[1];
    const [vcpuThread] = vcpuThreadIds(vm.pid);
    const origin = cpuGroupOf(vcpuThread!);
    const vcpu = new QemuVcpu(vm, { workload: WORKLOAD, throttleMeans: 'cgroup' });
    expect(vcpu.throttleMeans).toBe('cgroup');
    vcpu.setThrottle(40);
    const dir = path.join(DEFAULT_CPU_CGROUP_ROOT, `ferry-vcpu-${vm.pid}`);
    const tasks = readFileSync(path.join(dir, 'tasks'), 'utf8').trim().split('\n').map(Number);
    expect(tasks).toEqual([vcpuThread]);
    expect(cpuGroupOf(vcpuThread!)).toBe(`/ferry-vcpu-${vm.pid}`);
    expect(readFileSync(path.join(dir, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('60000');

    await vcpu.pause();
    await expectNoHeartbeatFor(vm, 500);
    vcpu.resume();
    await vm.waitForHeartbeat();
    await vcpu.stop();
    expect(existsSync(dir)).toBe(false);
    expect(cpuGroupOf(vcpuThread!)).toBe(origin);
  });

  cgroupIt('removes its cgroup and reports stopped when QEMU dies under a throttle', async () => {
    const doomed = await launch('doomed');
    try {
      const vcpu = new QemuVcpu(doomed, { workload: WORKLOAD, throttleMeans: 'cgroup' });
      vcpu.setThrottle(30);
      const dir = path.join(DEFAULT_CPU_CGROUP_ROOT, `ferry-doomed-${doomed.pid}`);
      expect(existsSync(dir)).toBe(true);
      await doomed.kill();
      await new Promise<void>((resolve) => setImmediate(resolve));
      expect(existsSync(dir)).toBe(false);
      expect(vcpu.stats().state).toBe('stopped');
      expect(() => vcpu.setThrottle(10)).toThrow(expect.objectContaining({ name: 'VcpuStoppedError' }));
    } finally {
      await doomed.destroy();
    }
  });
});
