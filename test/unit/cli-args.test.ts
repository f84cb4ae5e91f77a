import { flag, has, numberFlag, parseArgs } from '../../cli/args';
import { policyFromArgs } from '../../cli/migrate-commands';
import { progressLine } from '../../cli/progress-view';
import { parseRate, workloadFromArgs } from '../../cli/vm-commands';

describe('ferry argument parsing', () => {
  it('splits positionals, valued flags, --flag=value and boolean flags', () => {
    const args = parseArgs(['migrate', 'vm1', '--to', 'h2', '--downtime-limit=50', '--json']);
    expect(args.positionals).toEqual(['migrate', 'vm1']);
    expect(flag(args, 'to')).toBe('h2');
    expect(numberFlag(args, 'downtime-limit')).toBe(50);
    expect(has(args, 'json')).toBe(true);
  });

  it('names a flag that lacks its value', () => {
    expect(() => parseArgs(['migrate', 'vm1', '--to'])).toThrow('--to needs a value');
  });

  it('names a number flag that is not a number', () => {
    expect(() => numberFlag(parseArgs(['--max-rounds', 'many']), 'max-rounds')).toThrow(
      '--max-rounds must be a number, got "many"',
    );
  });
});

describe('rates and workloads', () => {
  it('reads rates in decimal units as networks quote them, and binary units as binary', () => {
    expect(parseRate('50MB/s')).toBe(50_000_000);
    expect(parseRate('1.5GB/s')).toBe(1_500_000_000);
    expect(parseRate('20MiB/s')).toBe(20 * 2 ** 20);
  });

  it('builds a hot-set workload from its flags', () => {
    const args = parseArgs(['--workload', 'hotset', '--rate', '50MB/s', '--hot-set', '64MiB']);
    expect(workloadFromArgs(args)).toEqual({ type: 'hotset', rateBytesPerSec: 50_000_000, hotSetBytes: 64 * 2 ** 20 });
  });

  it('refuses an unknown workload and a malformed rate, naming the flag', () => {
    expect(() => workloadFromArgs(parseArgs(['--workload', 'chaos']))).toThrow(
      '--workload must be idle, random, hotset or sweep, got "chaos"',
    );
    expect(() => workloadFromArgs(parseArgs(['--workload', 'random', '--rate', 'fast']))).toThrow(
      '--rate must be a rate such as 50MB/s or 20MiB/s, got "fast"',
    );
  });
});

describe('migration policy flags', () => {
  it('maps flags onto the workflow policy', () => {
    const args = parseArgs([
      '--downtime-limit',
      '100',
      '--max-rounds',
      '5',
      '--on-give-up',
      'force-switchover',
      '--store',
      '/mnt/s',
      '--keep-source',
    ]);
    expect(policyFromArgs(args)).toEqual({
      downtimeLimitMs: 100,
      maxRounds: 5,
      onGiveUp: 'force-switchover',
      store: '/mnt/s',
      keepSourceAfterSwitchover: true,
    });
  });

  it('refuses a bad value with the option name and the value, as a usage error', () => {
    expect(() => policyFromArgs(parseArgs(['--on-give-up', 'pray']))).toThrow(
      expect.objectContaining({
        name: 'CliError',
        exitCode: 2,
        message: 'onGiveUp must be "abort" or "force-switchover", got "pray"',
      }),
    );
  });
});

describe('progress line', () => {
  it('shows phase, round, what is left, rates and the downtime estimate against the limit', () => {
    const line = progressLine(
      {
        migrationId: 'm',
        vmId: 'vm1',
        phase: 'pre-copy',
        round: 2,
        pagesRemaining: 256,
        memoryPages: 1024,
        bytesSent: 5 * 2 ** 20,
        throughputBytesPerSec: 300e6,
        dirtyRateBytesPerSec: 50e6,
        expectedDowntimeMs: 3.5,
        downtimeLimitMs: 300,
        throttlePolicy: 'sdps',
        throttlePercent: 0,
        elapsedMs: 10,
        bytesViaNetwork: 5 * 2 ** 20,
        bytesViaStoreOnly: 0,
        incidents: [],
      },
      true,
    );
    expect(line).toBe('[########..] pre-copy r2 | 256 left | 300 MB/s | dirty 50 MB/s | est 4/300 ms');
  });
});
