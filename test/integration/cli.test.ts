/**
 * The `ferry` command against a real cluster: a migration with --json, and bad input refused with
 * one clear line and its exit code, leaving the source VM running and its memory intact.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXIT } from '../../cli/errors';
import type { MigrationResult } from '../../workflows/types';

import { expectSameMemory, useCluster, vmmCall } from './support/cluster-fixture';

jest.setTimeout(120_000);

const CLI = path.resolve(__dirname, '..', '..', 'cli', 'main.js');
const fx = useCluster();

function ferryCli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: fx.cluster.processEnv }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function sourceIntact(vmId: string): Promise<void> {
  const status = await vmmCall<{ vcpu: { state: string } }>(fx.cluster, 'h1', vmId, 'status');
  expect(status.vcpu.state).toBe('running');
  expect(await vmmCall(fx.cluster, 'h1', vmId, 'verify')).toEqual(expect.objectContaining({ badPages: 0 }));
}

test('vm create, vm list and migrate --json work end to end, and the memory matches page by page', async () => {
  const created = await ferryCli(
    'vm',
    'create',
    'cli-vm',
    '--host',
    'h1',
    '--memory',
    '16MiB',
    '--workload',
    'hotset',
    '--rate',
    '10MB/s',
    '--hot-set',
    '2MiB',
  );
  expect(created.stderr).toBe('');
  expect(created.code).toBe(0);
  expect(created.stdout).toContain('created VM cli-vm on h1');

  const listed = await ferryCli('vm', 'list', '--json');
  const hosts = JSON.parse(listed.stdout) as { hostId: string; vms: { vmId: string }[] }[];
  expect(hosts.find((h) => h.hostId === 'h1')?.vms.map((v) => v.vmId)).toContain('cli-vm');

  const migrated = await ferryCli('migrate', 'cli-vm', '--to', 'h2', '--keep-source', '--json');
  expect(migrated.code).toBe(0);
  const result = JSON.parse(migrated.stdout.trim()) as MigrationResult;
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });

  const status = await ferryCli('status', 'cli-vm', '--json');
  expect(JSON.parse(status.stdout)).toMatchObject({ status: 'COMPLETED', result: { outcome: 'completed' } });

  await expectSameMemory(fx, 'cli-vm');
  await fx.ferry.destroyVm('h1', 'cli-vm');
  await fx.ferry.destroyVm('h2', 'cli-vm');
});

describe('bad input gets one clear line and an exit code, and nothing is lost', () => {
  const vmId = 'steady-vm';

  beforeAll(async () => {
    await fx.ferry.createVm('h1', {
      vmId,
      memoryBytes: 8 * 2 ** 20,
      workload: { type: 'random', rateBytesPerSec: 5e6 },
      seed: 5,
    });
  });

  afterAll(async () => {
    await fx.ferry.destroyVm('h1', vmId);
  });

  test('an unknown VM', async () => {
    const out = await ferryCli('migrate', 'no-such-vm', '--to', 'h2');
    expect(out.code).toBe(EXIT.notFound);
    expect(out.stderr).toBe('ferry: unknown VM no-such-vm: no host among h1, h2 runs it\n');
  });

  test('an unknown host', async () => {
    const out = await ferryCli('migrate', vmId, '--to', 'h9');
    expect(out.code).toBe(EXIT.notFound);
    expect(out.stderr).toContain('unknown host h9');
    await sourceIntact(vmId);
  });

  test('the same source and destination', async () => {
    const out = await ferryCli('migrate', vmId, '--to', 'h1');
    expect(out.code).toBe(EXIT.usage);
    expect(out.stderr).toContain('source and destination are the same host');
    await sourceIntact(vmId);
  });

  test('a VM id that already exists on another host', async () => {
    const out = await ferryCli('vm', 'create', vmId, '--host', 'h2', '--memory', '8MiB');
    expect(out.code).toBe(EXIT.usage);
    expect(out.stderr).toContain(`VM ${vmId} already exists: the shared store records it on host h1`);
    await sourceIntact(vmId);
  });

  test('a malformed size', async () => {
    const out = await ferryCli('vm', 'create', 'sized', '--host', 'h1', '--memory', '12XB');
    expect(out.code).toBe(EXIT.usage);
    expect(out.stderr).toMatch(/^ferry: .*12XB/);
  });

  test('an unwritable store directory', async () => {
    const file = path.join(fx.cluster.env.stateDir, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    const out = await ferryCli('migrate', vmId, '--to', 'h2', '--store', path.join(file, 'store'));
    expect(out.code).toBe(EXIT.usage);
    expect(out.stderr).toContain('is not writable');
    await sourceIntact(vmId);
  });

  test('an invalid policy value names the option and the value', async () => {
    const out = await ferryCli('migrate', vmId, '--to', 'h2', '--downtime-limit', '-5');
    expect(out.code).toBe(EXIT.usage);
    expect(out.stderr).toBe('ferry: downtimeLimitMs must be a positive integer, got -5\n');
  });

  test('a VM that is already migrating', async () => {
    // Dirtying all 8 MiB at 200 MB/s with a 1 ms limit and a vast budget: it never converges on its own.
    await fx.ferry.destroyVm('h1', vmId);
    await fx.ferry.createVm('h1', {
      vmId,
      memoryBytes: 8 * 2 ** 20,
      workload: { type: 'random', rateBytesPerSec: 200e6 },
      seed: 6,
    });
    const workflowId = await fx.ferry.startMigration({
      vmId,
      sourceHost: 'h1',
      destinationHost: 'h2',
      policy: { downtimeLimitMs: 1, maxRounds: 10_000, completionBudgetSecPerGiB: 1_000_000 },
    });
    const out = await ferryCli('migrate', vmId, '--to', 'h2');
    expect(out.code).toBe(EXIT.conflict);
    expect(out.stderr).toContain(`VM ${vmId} is already migrating`);
    const cancelled = await ferryCli('cancel', vmId);
    expect(cancelled.code).toBe(0);
    await fx.ferry.result(workflowId).catch(() => undefined);
    await sourceIntact(vmId);
  });
});
