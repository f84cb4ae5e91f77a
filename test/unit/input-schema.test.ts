import type { HostContext } from '../../activities/host-context';
import { createVmActivities } from '../../activities/vm-activities';
import {
  closestName,
  destroyVmInputSchema,
  dumpVmMemoryInputSchema,
  ID_PATTERN,
  listVmsInputSchema,
  migrateVmInputSchema,
  parseInput,
  provisionVmInputSchema,
  setDowntimeLimitInputSchema,
  setThrottleInputSchema,
  validateId,
  type IdKind,
} from '../../model';
import { resolveSimulatedDriverOptions } from '../../vmm/driver';
import { validateVmId } from '../../vmm/vm-spec';
import { validateMigrateVmInput } from '../../workflows/migrate-vm-input';
import { DEFAULT_DOWNTIME_LIMIT_MS, resolveMigrationOptions } from '../../workflows/policy';

const GOOD = { vmId: 'vm1', sourceHost: 'h1', destinationHost: 'h2' };

/** The message `parseInput` refuses `raw` with (fails the test if it is accepted). */
function refusal(schema: Parameters<typeof parseInput>[0], raw: unknown, subject = 'input'): string {
  try {
    parseInput(schema, raw, subject);
  } catch (err) {
    expect(err).toMatchObject({ name: 'InvalidInputError' });
    return (err as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(raw)}`);
}

describe('unknown keys are refused with their full path and the closest known key', () => {
  it('in the policy of a migration, as the issue saw it run with the defaults', () => {
    expect(refusal(migrateVmInputSchema, { ...GOOD, policy: { downtimeLimit: 5, thottle: 'none' } })).toBe(
      'policy.downtimeLimit is not an option; did you mean policy.downtimeLimitMs?; ' +
        'policy.thottle is not an option; did you mean policy.throttle?',
    );
  });

  it('at the top of the migration input', () => {
    expect(refusal(migrateVmInputSchema, { ...GOOD, polcy: { downtimeLimitMs: 5 } })).toBe(
      'polcy is not an option; did you mean policy?',
    );
    expect(refusal(migrateVmInputSchema, { ...GOOD, destination: 'h3' })).toBe(
      'destination is not an option; did you mean destinationHost?',
    );
  });

  it('lists the options when no key is close', () => {
    expect(refusal(migrateVmInputSchema, { ...GOOD, policy: { colour: 'red' } })).toMatch(
      /^policy\.colour is not an option; the options are downtimeLimitMs, maxRounds, .*keepPageFile, encrypt$/,
    );
  });

  it('before the problems a misspelt key causes, and together with bad values', () => {
    expect(refusal(migrateVmInputSchema, { vmid: 'vm1', sourceHost: 'h1', destinationHost: 'h2' })).toBe(
      'vmid is not an option; did you mean vmId?; vmId must be 1-64 letters, digits, _ or -, starting with a letter or digit, got undefined',
    );
    expect(refusal(migrateVmInputSchema, { ...GOOD, policy: { maxRounds: 0, keepPagefile: true } })).toBe(
      'policy.keepPagefile is not an option; did you mean policy.keepPageFile?; ' +
        'policy.maxRounds must be a positive integer up to 1000, got 0',
    );
  });

  it('in the arguments of both updates', () => {
    expect(refusal(setDowntimeLimitInputSchema, { downtimeLimit: 500 })).toBe(
      'downtimeLimit is not an option; did you mean downtimeLimitMs?; downtimeLimitMs must be a positive integer, got undefined',
    );
    expect(refusal(setThrottleInputSchema, { percent: 10, pinned: true })).toBe(
      'pinned is not an option; the options are percent',
    );
    expect(refusal(setThrottleInputSchema, { precent: 10 })).toMatch(
      /^precent is not an option; did you mean percent\?/,
    );
  });

  it('in the inputs of the VM admin workflows', () => {
    expect(refusal(destroyVmInputSchema, { hostId: 'h1', vmId: 'vm1', force: true })).toBe(
      'force is not an option; the options are hostId, vmId',
    );
    expect(refusal(provisionVmInputSchema, { hostId: 'h1', vmId: 'vm1', memoryByte: 4096 })).toMatch(
      /^memoryByte is not an option; did you mean memoryBytes\?/,
    );
  });

  it('names an input that is not an object at all', () => {
    expect(refusal(migrateVmInputSchema, 5, 'migrateVm input')).toBe('migrateVm input must be an object, got 5');
    expect(refusal(migrateVmInputSchema, { ...GOOD, policy: 'fast' })).toBe('policy must be an object, got "fast"');
  });
});

describe('one id pattern for VM, host and migration ids', () => {
  const bad: [string, string][] = [
    ['a dot', 'a.b'],
    ['a path', '../x'],
    ['nothing', ''],
    ['65 characters', 'a'.repeat(65)],
    ['a leading dash', '-x'],
  ];

  it.each(bad)('refuses %s as a VM id, a host id and a migration id', (_what, value) => {
    const got = `got ${JSON.stringify(value)}`;
    for (const kind of ['vmId', 'hostId', 'migrationId'] as IdKind[])
      expect(() => validateId(kind, value)).toThrow(
        expect.objectContaining({
          name: 'InvalidInputError',
          message: `${kind} must be 1-64 letters, digits, _ or -, starting with a letter or digit, ${got}`,
        }),
      );
    expect(refusal(migrateVmInputSchema, { ...GOOD, vmId: value })).toContain(`vmId must be 1-64`);
    expect(refusal(migrateVmInputSchema, { ...GOOD, sourceHost: value })).toContain(`sourceHost must be 1-64`);
    expect(refusal(migrateVmInputSchema, { ...GOOD, destinationHost: value })).toContain(
      `destinationHost must be 1-64`,
    );
    expect(refusal(destroyVmInputSchema, { hostId: 'h1', vmId: value })).toContain(`vmId must be 1-64`);
    expect(refusal(dumpVmMemoryInputSchema, { hostId: value, vmId: 'vm1', path: '/tmp/d' })).toContain(
      `hostId must be 1-64`,
    );
    expect(refusal(listVmsInputSchema, { hostIds: ['h1', value] })).toContain('hostIds must be a list of host ids');
  });

  it('accepts 64 characters of letters, digits, _ and -', () => {
    for (const value of ['a'.repeat(64), 'vm-1_b', 'H2', '0']) expect(validateId('vmId', value)).toBe(value);
    expect(ID_PATTERN.test('a'.repeat(64))).toBe(true);
  });
});

describe('the host side checks ids with the same pattern', () => {
  /** A host whose driver, VMM calls and store are jest.fn that must not be reached. */
  function untouchedHost() {
    const driver = { createVm: jest.fn(), destroyVm: jest.fn(), getVm: jest.fn(), listVms: jest.fn() };
    const call = jest.fn();
    const host = {
      driver,
      hostId: 'h1',
      defaultStore: '/nonexistent/ferry-store',
      call,
      guarded: <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => fn,
      summarize: jest.fn(),
    } as unknown as HostContext;
    return { activities: createVmActivities(host), driver, call };
  }

  it.each(['../x', 'a.b', '', 'a'.repeat(65)])(
    'refuses VM id %j in createVm, destroyVm and dumpVmMemory before touching the driver or the store',
    async (vmId) => {
      const { activities, driver, call } = untouchedHost();
      const refused = expect.objectContaining({ name: 'ApplicationFailure', type: 'InvalidInput', nonRetryable: true });
      await expect(activities.destroyVm({ vmId })).rejects.toEqual(refused);
      await expect(activities.dumpVmMemory({ vmId, path: '/tmp/dump' })).rejects.toEqual(refused);
      await expect(activities.createVm({ vmId, memoryBytes: 4096, workload: { type: 'idle' } })).rejects.toEqual(
        refused,
      );
      for (const fn of [...Object.values(driver), call]) expect(fn).not.toHaveBeenCalled();
    },
  );

  it('in the VMM spec parser and the driver options', () => {
    expect(() => validateVmId('a.b')).toThrow(
      'vmId must be 1-64 letters, digits, _ or -, starting with a letter or digit, got "a.b"',
    );
    expect(() => resolveSimulatedDriverOptions({ hostId: 'h.1', stateDir: '/tmp' })).toThrow(
      'hostId must be 1-64 letters, digits, _ or -, starting with a letter or digit, got "h.1"',
    );
  });
});

describe('the workflow boundary', () => {
  it('fails a bad input as a non-retryable InvalidInput failure naming the path and the suggestion', () => {
    expect(() => validateMigrateVmInput({ ...GOOD, policy: { downtimeLimit: 5 } as never })).toThrow(
      expect.objectContaining({
        name: 'ApplicationFailure',
        type: 'InvalidInput',
        nonRetryable: true,
        message: 'policy.downtimeLimit is not an option; did you mean policy.downtimeLimitMs?',
      }),
    );
  });

  it('keeps the path of the policy in messages about its values, the store included', () => {
    expect(() => validateMigrateVmInput({ ...GOOD, policy: { downtimeLimitMs: -5 } })).toThrow(
      'policy.downtimeLimitMs must be a positive integer, got -5',
    );
    expect(() => validateMigrateVmInput({ ...GOOD, policy: { store: 'shared' } })).toThrow(
      'policy.store must be an absolute path (the hosts resolve it, not the client), got "shared"',
    );
  });

  it('reads null options as not given, as clients that serialise absent fields send them', () => {
    expect(validateMigrateVmInput({ ...GOOD, policy: { downtimeLimitMs: null } as never }).downtimeLimitMs).toBe(
      DEFAULT_DOWNTIME_LIMIT_MS,
    );
    expect(resolveMigrationOptions(null).downtimeLimitMs).toBe(DEFAULT_DOWNTIME_LIMIT_MS);
  });
});

describe('closestName', () => {
  it('finds a misspelling, a missing unit, another case or separator, and a prefix', () => {
    const options = ['downtimeLimitMs', 'maxRounds', 'throttle', 'store', 'storeDir'];
    expect(closestName('thottle', options)).toBe('throttle');
    expect(closestName('downtimeLimit', options)).toBe('downtimeLimitMs');
    expect(closestName('downtime_limit_ms', options)).toBe('downtimeLimitMs');
    expect(closestName('downtime', ['downtime-limit', 'json', 'to'])).toBe('downtime-limit');
    expect(closestName('colour', options)).toBeUndefined();
  });
});
