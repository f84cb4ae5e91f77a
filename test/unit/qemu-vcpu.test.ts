import { guestKernelCommandLine } from '../../infra/qemu/guest-image';
import type { QemuProcess } from '../../vmm/qemu/qemu-process';
import { memwriterArgs, QemuVcpu } from '../../vmm/qemu/qemu-vcpu';

const MIB = 1024 * 1024;
const HOTSET = { type: 'hotset' as const, rateBytesPerSec: 150e6, hotSetBytes: 16 * MIB };

/** A QEMU that never answers and never exits: enough for the checks made before any QMP command. */
function silentQemu(): QemuProcess {
  return { vmId: 'vm1', pid: -1, exited: new Promise(() => undefined) } as unknown as QemuProcess;
}

describe('memwriterArgs', () => {
  it('maps a hotset workload to whole MiB and MB/s that the kernel command line accepts', () => {
    const args = memwriterArgs(HOTSET, 48);
    expect(args).toEqual({ fillMib: 48, hotMib: 16, rateMbPerSec: 150 });
    expect(guestKernelCommandLine(args)).toContain('ferry.hot_mib=16 ferry.rate_mbps=150');
  });

  it('writes nothing for idle, over the whole fill for random, and caps a hot set at the fill', () => {
    expect(memwriterArgs({ type: 'idle' }, 48)).toEqual({ fillMib: 48, hotMib: 0, rateMbPerSec: 0 });
    expect(memwriterArgs({ type: 'random', rateBytesPerSec: 50e6 }, 48)).toMatchObject({ hotMib: 48 });
    expect(memwriterArgs({ ...HOTSET, hotSetBytes: 1000 * MIB }, 48)).toMatchObject({ hotMib: 48 });
    expect(memwriterArgs({ ...HOTSET, hotSetBytes: 4096 }, 48)).toMatchObject({ hotMib: 1 });
  });

  it('refuses a sweep, a rate under 1 MB/s and a fill that is not a positive integer', () => {
    expect(() => memwriterArgs({ type: 'sweep', rateBytesPerSec: 50e6 }, 48)).toThrow(/cannot run a sweep/);
    expect(() => memwriterArgs({ ...HOTSET, rateBytesPerSec: 1000 }, 48)).toThrow(/at least 500000/);
    expect(() => memwriterArgs(HOTSET, 0)).toThrow(expect.objectContaining({ name: 'VmmParamsError' }));
  });
});

describe('QemuVcpu arguments', () => {
  it('rejects a throttle outside 0..99 before touching QEMU', () => {
    const vcpu = new QemuVcpu(silentQemu(), { workload: HOTSET, throttleMeans: 'slices' });
    for (const bad of [-1, 100, Number.NaN, '50' as unknown as number])
      expect(() => vcpu.setThrottle(bad)).toThrow(
        expect.objectContaining({ name: 'VmmParamsError', option: 'percent' }),
      );
    expect(vcpu.stats()).toMatchObject({ state: 'running', throttlePercent: 0, pagesWritten: 0 });
  });

  it('keeps the workload it was booted with and refuses any other, saying it is fixed at boot', () => {
    const vcpu = new QemuVcpu(silentQemu(), { workload: HOTSET, paused: true });
    expect(vcpu.workload()).toEqual(HOTSET);
    expect(() => vcpu.setWorkload({ ...HOTSET })).not.toThrow();
    expect(() => vcpu.setWorkload({ type: 'idle' })).toThrow(/workload is fixed at boot/);
    expect(() => vcpu.setWorkload({ type: 'idle' })).toThrow(expect.objectContaining({ name: 'VmmParamsError' }));
    expect(vcpu.stats().state).toBe('paused');
  });

  it('takes no command once stopped', async () => {
    const vcpu = new QemuVcpu(silentQemu(), { workload: { type: 'idle' }, throttleMeans: 'slices' });
    await vcpu.stop();
    expect(vcpu.stats().state).toBe('stopped');
    expect(() => vcpu.resume()).toThrow(expect.objectContaining({ name: 'VcpuStoppedError' }));
    await expect(vcpu.pause()).rejects.toMatchObject({ name: 'VcpuStoppedError' });
  });
});
