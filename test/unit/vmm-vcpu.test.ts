import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { Vcpu } from '../../vmm/vcpu';
import { createPageChooser } from '../../vmm/workload';
import type { Workload } from '../../vmm/workload';

const MB = 1024 * 1024;

jest.setTimeout(20_000);

/** Resolves once `predicate` holds, polling the vCPU's shared counters (no message needed). */
async function until(predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('Vcpu', () => {
  const started: Vcpu[] = [];
  const start = (memory: GuestMemory, workload: Workload, seed: number, paused = false): Vcpu => {
    const vcpu = Vcpu.start(memory, workload, seed, { paused });
    started.push(vcpu);
    return vcpu;
  };
  afterEach(async () => {
    await Promise.all(started.splice(0).map((vcpu) => vcpu.stop()));
  });

  it('dirties only pages of the hot set under a hotset workload', async () => {
    const memory = GuestMemory.create(1024);
    const vcpu = start(memory, { type: 'hotset', rateBytesPerSec: 40 * MB, hotSetBytes: 64 * PAGE_SIZE_BYTES }, 1);
    await until(() => vcpu.stats().pagesWritten >= 500);
    await vcpu.pause();
    const dirty = Array.from(memory.collectDirty());
    expect(dirty.length).toBeGreaterThan(0);
    expect(Math.max(...dirty)).toBeLessThan(64);
    for (let i = 64; i < 1024; i += 1) expect(memory.isZeroPage(i)).toBe(true);
    expect(memory.verifyAll().badPages).toEqual([]);
  });

  it('writes nothing once pause() has resolved, and writes again after resume()', async () => {
    const memory = GuestMemory.create(4096);
    const vcpu = start(memory, { type: 'random', rateBytesPerSec: 400 * MB }, 2);
    await until(() => vcpu.stats().pagesWritten >= 2_000);
    const latencies: number[] = [];
    for (let round = 0; round < 5; round += 1) {
      const before = performance.now();
      await vcpu.pause();
      latencies.push(performance.now() - before);
      memory.collectDirty();
      const { pagesWritten } = vcpu.stats();
      const digest = memory.digest();
      await delay(30);
      expect(vcpu.stats()).toMatchObject({ state: 'paused', pagesWritten });
      expect(memory.collectDirty()).toHaveLength(0);
      expect(memory.digest()).toBe(digest);
      vcpu.resume();
      await until(() => vcpu.stats().pagesWritten > pagesWritten + 100);
    }
    // Normally well under a millisecond; the bounds leave room for a loaded two-core machine.
    latencies.sort((a, b) => a - b);
    expect(latencies[2]).toBeLessThan(10);
    expect(latencies[4]).toBeLessThan(250);
  });

  it('runs a guest about half as fast at 50% throttle as unthrottled', async () => {
    const memory = GuestMemory.create(1024);
    const vcpu = start(memory, { type: 'random', rateBytesPerSec: 4 * MB }, 3);
    const rate = async (): Promise<number> => {
      const from = vcpu.stats().workUnits;
      const t0 = performance.now();
      await delay(600);
      return (vcpu.stats().workUnits - from) / (performance.now() - t0);
    };
    await delay(50);
    const unthrottled = await rate();
    vcpu.setThrottle(50);
    expect(vcpu.stats().throttlePercent).toBe(50);
    await delay(30);
    const throttled = await rate();
    expect(throttled / unthrottled).toBeLessThan(0.8);
    expect(throttled / unthrottled).toBeGreaterThan(0.2);
  });

  it('writes exactly the pages its seed chooses, each generation once', async () => {
    const memory = GuestMemory.create(256);
    const workload: Workload = { type: 'random', rateBytesPerSec: 20 * MB };
    const vcpu = start(memory, workload, 1234);
    await until(() => vcpu.stats().pagesWritten >= 1_000);
    await vcpu.pause();
    const expected = new Array<number>(256).fill(0);
    const next = createPageChooser(workload, 256, 1234);
    for (let n = 0; n < vcpu.stats().pagesWritten; n += 1) {
      const index = next();
      expected[index] = (expected[index] ?? 0) + 1;
    }
    const generations = Array.from({ length: 256 }, (_, i) => memory.meta[i * 2]);
    expect(generations).toEqual(expected);
    expect(memory.verifyAll().badPages).toEqual([]);
  });

  it('leaves memory untouched while idle or started paused, and reports its state', async () => {
    const memory = GuestMemory.create(64);
    const idle = start(memory, { type: 'idle' }, 5);
    const parked = start(memory, { type: 'sweep', rateBytesPerSec: 10 * MB }, 5, true);
    await until(() => idle.stats().workUnits >= 20 && parked.stats().state === 'paused');
    expect(idle.stats()).toMatchObject({ state: 'running', pagesWritten: 0 });
    expect(parked.stats().pagesWritten).toBe(0);
    expect(memory.collectDirty()).toHaveLength(0);
    idle.setWorkload({ type: 'sweep', rateBytesPerSec: 10 * MB });
    expect(idle.workload()).toEqual({ type: 'sweep', rateBytesPerSec: 10 * MB });
    await until(() => idle.stats().pagesWritten >= 64);
    expect(memory.isZeroPage(63)).toBe(false);
  });

  it('refuses commands after stop and rejects a throttle outside 0..99', async () => {
    const vcpu = start(GuestMemory.create(8), { type: 'idle' }, 1);
    expect(() => vcpu.setThrottle(100)).toThrow('throttle percent must be a number in 0..99, got 100');
    await vcpu.stop();
    expect(vcpu.stats().state).toBe('stopped');
    await expect(vcpu.pause()).rejects.toMatchObject({ name: 'VcpuStoppedError' });
    expect(() => vcpu.resume()).toThrow(/vCPU thread has stopped/);
  });
});
