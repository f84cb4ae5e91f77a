import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { formatVmmArgs, parseVmmArgs } from '../../vmm/vmm-args';
import { resolveVmSpec, validateGuestImageKey } from '../../vmm/vm-spec';
import type { VmSpec } from '../../vmm/vm-spec';
import { createPageChooser, resolveWorkload } from '../../vmm/workload';
import type { Workload } from '../../vmm/workload';

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

describe('workloads', () => {
  it('accepts each workload type and drops unknown fields', () => {
    expect(resolveWorkload({ type: 'idle', extra: 1 })).toEqual({ type: 'idle' });
    expect(resolveWorkload({ type: 'sweep', rateBytesPerSec: 10 })).toEqual({ type: 'sweep', rateBytesPerSec: 10 });
    expect(resolveWorkload({ type: 'hotset', rateBytesPerSec: 1, hotSetBytes: 8192 })).toEqual({
      type: 'hotset',
      rateBytesPerSec: 1,
      hotSetBytes: 8192,
    });
  });

  it('names the field and the bad value when a workload is invalid', () => {
    expect(errorOf(() => resolveWorkload({ type: 'random', rateBytesPerSec: -1 })).message).toBe(
      'workload.rateBytesPerSec must be a positive number, got -1',
    );
    expect(errorOf(() => resolveWorkload({ type: 'burst' })).message).toMatch(
      /workload.type must be one of .* got "burst"/,
    );
    expect(errorOf(() => resolveWorkload('idle')).name).toBe('VmmParamsError');
  });

  it('chooses the same pages for the same seed and other pages for another seed', () => {
    const workload: Workload = { type: 'random', rateBytesPerSec: 1 };
    const take = (seed: number): number[] => {
      const next = createPageChooser(workload, 1000, seed);
      return Array.from({ length: 50 }, () => next());
    };
    expect(take(7)).toEqual(take(7));
    expect(take(7)).not.toEqual(take(8));
  });

  it('keeps a hot set workload inside its hot set and sweeps in order, wrapping', () => {
    const hot = createPageChooser({ type: 'hotset', rateBytesPerSec: 1, hotSetBytes: 10 * PAGE_SIZE_BYTES }, 1000, 3);
    const hotPages = new Set(Array.from({ length: 1000 }, () => hot()));
    expect(Math.max(...hotPages)).toBe(9);
    expect(hotPages.size).toBe(10);
    const sweep = createPageChooser({ type: 'sweep', rateBytesPerSec: 1 }, 3, 3);
    expect([sweep(), sweep(), sweep(), sweep()]).toEqual([0, 1, 2, 0]);
  });
});

describe('VM specs', () => {
  const base: VmSpec = { vmId: 'vm-1', memoryBytes: 64 * PAGE_SIZE_BYTES, workload: { type: 'idle' } };

  it('applies defaults and derives the page count', () => {
    expect(resolveVmSpec(base)).toEqual({ ...base, pageCount: 64, seed: 1, fillRatio: 1, driver: 'simulated' });
  });

  it.each([
    [{ memoryBytes: 1000 }, 'memoryBytes must be a positive multiple of 4096, got 1000'],
    [{ memoryBytes: 0 }, 'memoryBytes must be a positive multiple of 4096, got 0'],
    [{ vmId: '../etc' }, /vmId must be 1-64 letters.*got "..\/etc"/],
    [{ fillRatio: 1.5 }, 'fillRatio must be a number in 0..1, got 1.5'],
    [{ seed: 2.5 }, 'seed must be an integer in 0..4294967295, got 2.5'],
    [{ workload: { type: 'random' } }, 'workload.rateBytesPerSec must be a positive number, got undefined'],
  ])('rejects %j', (change, message) => {
    const err = errorOf(() => resolveVmSpec({ ...base, ...change } as VmSpec));
    expect(err.name).toBe('InvalidVmSpecError');
    expect(err.message).toMatch(message);
  });
});

describe('the guest image key a destination is asked to start', () => {
  it('is absent, or 16 lowercase hex digits for a QEMU guest', () => {
    expect(validateGuestImageKey(undefined, 'simulated')).toBeUndefined();
    expect(validateGuestImageKey('0123456789abcdef', 'qemu')).toBe('0123456789abcdef');
  });

  it('is refused, naming guestImageKey, when malformed or given for a simulated guest', () => {
    for (const key of ['../etc/passwd', '0123456789ABCDEF', '0123456789abcde', 42])
      expect(() => validateGuestImageKey(key, 'qemu')).toThrow(
        expect.objectContaining({ name: 'InvalidVmSpecError', option: 'guestImageKey' }),
      );
    expect(() => validateGuestImageKey('0123456789abcdef', 'simulated')).toThrow(/for QEMU guests only/);
  });
});

describe('VMM command line', () => {
  it('parses what it formats', () => {
    const opts = {
      vmId: 'v1',
      pageCount: 16,
      socketPath: '/tmp/v1.sock',
      mode: 'incoming' as const,
      workload: { type: 'hotset' as const, rateBytesPerSec: 5, hotSetBytes: 8192 },
      seed: 77,
      fillRatio: 0.5,
      driver: 'simulated' as const,
    };
    expect(parseVmmArgs(formatVmmArgs(opts))).toEqual(opts);
    const qemu = { ...opts, pageCount: 32_768, mode: 'run' as const, driver: 'qemu' as const };
    expect(formatVmmArgs(qemu)).toEqual(expect.arrayContaining(['--driver', 'qemu']));
    expect(parseVmmArgs(formatVmmArgs(qemu))).toEqual(qemu);
    const withImage = { ...qemu, guestImage: { kernelPath: '/g/vmlinuz', initrdPath: '/g/initrd.cpio' } };
    expect(parseVmmArgs(formatVmmArgs(withImage))).toEqual(withImage);
  });

  it('takes a guest image as two absolute paths, or none', () => {
    const base = ['--vm-id', 'v', '--socket', 's', '--mode', 'run', '--pages', '32768', '--driver', 'qemu'];
    expect(errorOf(() => parseVmmArgs([...base, '--kernel', '/g/vmlinuz'])).message).toBe(
      '--kernel and --initrd go together',
    );
    expect(errorOf(() => parseVmmArgs([...base, '--kernel', 'vmlinuz', '--initrd', '/g/i'])).message).toBe(
      '--kernel must be an absolute path, got "vmlinuz"',
    );
  });

  it('refuses an unknown driver, and a QEMU guest of a size QEMU cannot boot', () => {
    const base = ['--vm-id', 'v', '--socket', 's', '--mode', 'run'];
    expect(errorOf(() => parseVmmArgs([...base, '--pages', '32768', '--driver', 'xen'])).message).toBe(
      'driver must be one of simulated, qemu, got "xen"',
    );
    expect(errorOf(() => parseVmmArgs([...base, '--pages', '1000', '--driver', 'qemu'])).message).toBe(
      "a QEMU guest's memoryBytes must be a multiple of 1 MiB from 64 MiB to 4 GiB, got 4096000",
    );
  });

  it('says which flag is wrong', () => {
    expect(
      errorOf(() => parseVmmArgs(['--vm-id', 'v', '--pages', '0', '--socket', 's', '--mode', 'run'])).message,
    ).toBe('--pages must be a positive integer, got "0"');
    expect(
      errorOf(() => parseVmmArgs(['--vm-id', 'v', '--pages', '1', '--socket', 's', '--mode', 'walk'])).message,
    ).toBe('--mode must be run or incoming, got "walk"');
    expect(errorOf(() => parseVmmArgs(['--pages', '1', '--socket', 's', '--mode', 'run'])).message).toBe(
      '--vm-id is required',
    );
    expect(errorOf(() => parseVmmArgs(['--bogus'])).name).toBe('VmmParamsError');
  });
});
