import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildProgram, numberOrText, type CommandActions } from '../../cli/args';
import { EXIT } from '../../cli/errors';
import { main } from '../../cli/main';
import { downtimeLimitFromArg, policyFromFlags, throttleFromArg } from '../../cli/migrate-commands';
import { progressLine } from '../../cli/progress-view';
import { driverFromFlag, hostsFromFlag, parseRate, workloadFromFlags } from '../../cli/vm-commands';
import { projectRoot } from '../../temporal-config';

/** Every command as a jest.fn that does nothing. */
function fakeActions(): jest.Mocked<CommandActions> {
  const names: (keyof CommandActions)[] = [
    'up',
    'down',
    'vmCreate',
    'vmList',
    'vmDestroy',
    'migrate',
    'status',
    'throttle',
    'downtimeLimit',
    'cancel',
    'demo',
  ];
  return Object.fromEntries(
    names.map((n) => [n, jest.fn(async () => undefined)]),
  ) as unknown as jest.Mocked<CommandActions>;
}

/** Parses `argv` with fake actions; returns the actions, or the error the command line was refused with. */
async function parse(argv: string[]): Promise<{ actions: jest.Mocked<CommandActions>; error?: unknown }> {
  const actions = fakeActions();
  try {
    await buildProgram(actions, '9.9.9').parseAsync(argv, { from: 'user' });
    return { actions };
  } catch (error) {
    return { actions, error };
  }
}

/** What `main(argv)` printed and returned, without a cluster. */
async function runMain(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    return { code: await main(argv), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

describe('the ferry command line', () => {
  it('hands positionals, valued flags, --flag=value and boolean flags to the command', async () => {
    const { actions, error } = await parse(['migrate', 'vm1', '--to', 'h2', '--downtime-limit=50', '--json']);
    expect(error).toBeUndefined();
    expect(actions.migrate).toHaveBeenCalledWith(
      'vm1',
      expect.objectContaining({ to: 'h2', downtimeLimit: '50', json: true, progress: true }),
    );
  });

  it('takes --encrypt on migrate and maps it onto policy.encrypt', async () => {
    const { actions, error } = await parse(['migrate', 'vm1', '--to', 'h2', '--encrypt']);
    expect(error).toBeUndefined();
    expect(actions.migrate).toHaveBeenCalledWith('vm1', expect.objectContaining({ encrypt: true }));
    expect(policyFromFlags({ encrypt: true })).toEqual({ encrypt: true });
    expect(policyFromFlags({})).toEqual({});
  });

  it('refuses an unknown flag, naming it and the flag it resembles, and runs nothing', async () => {
    const { actions, error } = await parse(['migrate', 'vm1', '--to', 'h2', '--downtime', '50']);
    expect(error).toMatchObject({
      name: 'CliError',
      exitCode: EXIT.usage,
      message: 'unknown option --downtime for `ferry migrate`; did you mean --downtime-limit?',
    });
    expect(actions.migrate).not.toHaveBeenCalled();
  });

  it('refuses an unknown command with the one it resembles', async () => {
    const { error } = await parse(['migrat', 'vm1']);
    expect(error).toMatchObject({
      exitCode: EXIT.usage,
      message: 'unknown command "migrat"; did you mean `ferry migrate`?',
    });
  });

  it('names a flag that lacks its value, a missing argument and a surplus one', async () => {
    expect((await parse(['migrate', 'vm1', '--to'])).error).toMatchObject({
      exitCode: EXIT.usage,
      message: expect.stringContaining("option '--to <host>' argument missing") as string,
    });
    expect((await parse(['migrate', 'vm1'])).error).toMatchObject({
      message: expect.stringContaining("required option '--to <host>' not specified") as string,
    });
    expect((await parse(['status', 'vm1', 'vm2'])).error).toMatchObject({
      message: expect.stringContaining('too many arguments') as string,
    });
  });

  it('refuses a malformed id in any position before any command runs', async () => {
    for (const argv of [
      ['vm', 'create', 'a.b'],
      ['vm', 'destroy', '../x'],
      ['migrate', 'vm1', '--to', 'h.2'],
      ['status', 'a'.repeat(65)],
      ['cancel', ''],
    ]) {
      const { actions, error } = await parse(argv);
      expect(error).toMatchObject({
        name: 'InvalidInputError',
        message: expect.stringMatching(
          /must be 1-64 letters, digits, _ or -, starting with a letter or digit, got/,
        ) as string,
      });
      expect(Object.values(actions).every((fn) => fn.mock.calls.length === 0)).toBe(true);
    }
    expect(() => hostsFromFlag('h1,a.b')).toThrow('--hosts entry must be 1-64 letters');
  });

  it('prints the help of one command for `ferry migrate --help`, and exits 0', async () => {
    const { code, stdout } = await runMain(['migrate', '--help']);
    expect(code).toBe(EXIT.ok);
    expect(stdout).toContain('Usage: ferry migrate [options] <vm>');
    expect(stdout).toContain('--downtime-limit <ms>');
    expect(stdout).not.toContain('vm create');
  });

  it('prints the version of package.json for `ferry --version`', async () => {
    const { code, stdout } = await runMain(['--version']);
    expect(code).toBe(EXIT.ok);
    const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    expect(stdout.trim()).toBe(pkg.version);
  });

  it('prints one line and exits 2 for bad input, without needing a cluster', async () => {
    expect(await runMain(['migrate', 'vm1', '--to', 'h2', '--downtime', '50'])).toEqual({
      code: EXIT.usage,
      stdout: '',
      stderr: 'ferry: unknown option --downtime for `ferry migrate`; did you mean --downtime-limit?\n',
    });
    expect(await runMain(['migrate', 'vm1', '--to', 'h2', '--downtime-limit', '-5'])).toMatchObject({
      code: EXIT.usage,
      stderr: 'ferry: downtimeLimitMs must be a positive integer, got -5\n',
    });
    expect(await runMain(['vm', 'create', 'a.b'])).toMatchObject({
      code: EXIT.usage,
      stderr: 'ferry: vmId must be 1-64 letters, digits, _ or -, starting with a letter or digit, got "a.b"\n',
    });
  });

  it('reads a number as a number and anything else as text, for the schemas to judge', () => {
    expect(numberOrText('50')).toBe(50);
    expect(numberOrText('-5')).toBe(-5);
    expect(numberOrText('many')).toBe('many');
    expect(numberOrText('')).toBe('');
  });
});

describe('rates and workloads', () => {
  it('reads rates in decimal units as networks quote them, and binary units as binary', () => {
    expect(parseRate('50MB/s')).toBe(50_000_000);
    expect(parseRate('1.5GB/s')).toBe(1_500_000_000);
    expect(parseRate('20MiB/s')).toBe(20 * 2 ** 20);
  });

  it('builds a hot-set workload from its flags', () => {
    expect(workloadFromFlags({ workload: 'hotset', rate: '50MB/s', hotSet: '64MiB' })).toEqual({
      type: 'hotset',
      rateBytesPerSec: 50_000_000,
      hotSetBytes: 64 * 2 ** 20,
    });
  });

  it('refuses an unknown workload and a malformed rate, naming the flag', () => {
    expect(() => workloadFromFlags({ workload: 'chaos' })).toThrow(
      '--workload must be idle, random, hotset or sweep, got "chaos"',
    );
    expect(() => workloadFromFlags({ workload: 'random', rate: 'fast' })).toThrow(
      '--rate must be a rate such as 50MB/s or 20MiB/s, got "fast"',
    );
  });

  it('takes the simulated driver by default, qemu when asked, and refuses any other', () => {
    expect(driverFromFlag(undefined)).toBe('simulated');
    expect(driverFromFlag('qemu')).toBe('qemu');
    expect(() => driverFromFlag('xen')).toThrow('--driver must be one of simulated, qemu, got "xen"');
  });
});

describe('migration policy flags', () => {
  it('maps flags onto the workflow policy', () => {
    expect(
      policyFromFlags({
        downtimeLimit: '100',
        maxRounds: '5',
        onGiveUp: 'force-switchover',
        store: '/mnt/s',
        keepSource: true,
      }),
    ).toEqual({
      downtimeLimitMs: 100,
      maxRounds: 5,
      onGiveUp: 'force-switchover',
      store: '/mnt/s',
      keepSourceAfterSwitchover: true,
    });
  });

  it('refuses a bad value with the option name and the value, as a usage error', () => {
    expect(() => policyFromFlags({ onGiveUp: 'pray' })).toThrow(
      expect.objectContaining({
        name: 'CliError',
        exitCode: 2,
        message: 'onGiveUp must be "abort" or "force-switchover", got "pray"',
      }),
    );
    expect(() => policyFromFlags({ maxRounds: 'many' })).toThrow(
      'maxRounds must be a positive integer up to 1000, got "many"',
    );
  });

  it('reads the values of the throttle and downtime-limit commands', () => {
    expect(throttleFromArg('policy')).toBeNull();
    expect(throttleFromArg('40')).toBe(40);
    expect(() => throttleFromArg('lots')).toThrow('throttle must be a percent from 0 to 99 or "policy", got "lots"');
    expect(downtimeLimitFromArg('500')).toBe(500);
    expect(() => downtimeLimitFromArg('0')).toThrow('downtimeLimitMs must be a positive integer, got 0');
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
