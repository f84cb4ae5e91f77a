/**
 * The `ferry` command against a real cluster: a migration with --json, and bad input refused with
 * one clear line and its exit code, leaving the source VM running and its memory intact. And
 * `ferry demo --store s3` bringing up an embedded default of its own, SeaweedFS included, on its
 * own ports and state dir, and `ferry down` taking it all down again.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXIT } from '../../cli/errors';
import { EMBEDDED_S3_BUCKET, EMBEDDED_S3_STORE } from '../../infra/cluster-store';
import { killAllWorkers, stopAllVmms } from '../../infra/ferry-cluster';
import { pickFreePorts } from '../../infra/ports';
import { stopSeaweedServer } from '../../infra/seaweedfs';
import { startEmbeddedSeaweed } from '../../infra/seaweedfs-embedded';
import { makeTestStateDir } from '../../harness/test-services';
import { openPageStore } from '../../store/open-store';
import { projectRoot, s3Environment } from '../../temporal-config';
import type { MigrationResult } from '../../workflows/types';

import { expectSameMemory, useCluster, vmmCall } from './support/cluster-fixture';
import { runFerryCli, type CommandOutput } from './support/run-cli';

jest.setTimeout(120_000);

const fx = useCluster();

function runCli(env: NodeJS.ProcessEnv, args: string[]): Promise<CommandOutput> {
  return runFerryCli(env, args);
}

function ferryCli(...args: string[]): Promise<CommandOutput> {
  return runCli(fx.cluster.processEnv, args);
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
      policy: { downtimeLimitMs: 1, maxRounds: 1_000, completionBudgetSecPerGiB: 1_000_000 },
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

describe('the command line refuses what it does not know, and explains itself', () => {
  test('an unknown flag is refused, naming the flag meant', async () => {
    const out = await ferryCli('migrate', 'steady-vm', '--to', 'h2', '--downtime', '50');
    expect(out.code).toBe(EXIT.usage);
    expect(out.stderr).toBe('ferry: unknown option --downtime for `ferry migrate`; did you mean --downtime-limit?\n');
  });

  test('a VM id outside the one id pattern is refused at create, so it never exists to fail a migration', async () => {
    const out = await ferryCli('vm', 'create', 'a.b', '--host', 'h1', '--memory', '8MiB');
    expect(out.code).toBe(EXIT.usage);
    expect(out.stderr).toBe(
      'ferry: vmId must be 1-64 letters, digits, _ or -, starting with a letter or digit, got "a.b"\n',
    );
    const listing = await fx.ferry.listVms(['h1']);
    expect(listing[0]?.vms.map((v) => v.vmId)).not.toContain('a.b');
  });

  test('ferry migrate --help prints the help of migrate', async () => {
    const out = await ferryCli('migrate', '--help');
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('Usage: ferry migrate [options] <vm>');
    expect(out.stdout).toContain('--downtime-limit <ms>');
    expect(out.stdout).not.toContain('vm create');
  });

  test('ferry --version prints the version of package.json', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    const out = await ferryCli('--version');
    expect(out).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });
});

describe('ferry demo --store s3', () => {
  let stateDir: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    stateDir = makeTestStateDir();
    const [temporal, ui, nats, s3] = await pickFreePorts(4);
    // This process's FERRY_* point elsewhere (another cluster, the suite's store): none may leak in.
    const inherited = Object.entries(process.env).filter(([name]) => !/^FERRY_(?!TOOLS_DIR$)/.test(name));
    env = {
      ...Object.fromEntries(inherited),
      FERRY_STATE_DIR: stateDir,
      FERRY_TEMPORAL_PORT: String(temporal),
      FERRY_TEMPORAL_UI_PORT: String(ui),
      FERRY_NATS_PORT: String(nats),
      FERRY_S3_ENDPOINT: `http://127.0.0.1:${s3}`,
    };
  });

  afterAll(async () => {
    // Normally `ferry down` in the test has stopped it all; after a failure, it is done here.
    await runCli(env, ['down']);
    killAllWorkers(stateDir);
    stopAllVmms(stateDir);
    await stopSeaweedServer({ stateDir, stopGraceMs: 1_000 });
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  /** Pids of `weed` processes whose command line names this test's state dir. */
  function weedProcesses(): number[] {
    return fs
      .readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .filter((pid) => {
        try {
          const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          return path.basename(argv[0] ?? '') === 'weed' && argv.some((arg) => arg.includes(stateDir));
        } catch {
          return false;
        }
      })
      .map(Number);
  }

  test('migrates on the embedded SeaweedFS end to end, checks every page, and ferry down stops SeaweedFS too', async () => {
    const vmId = 'demo-on-s3';
    const demo = await runCli(env, ['demo', '--store', 's3', '--json', '--vm', vmId]);
    expect(demo.stderr).not.toContain('unexpected error');
    expect(demo.code).toBe(0);
    expect(demo.stderr).toContain(`store: ${EMBEDDED_S3_STORE} (S3 at ${env['FERRY_S3_ENDPOINT']})`);
    const lines = demo.stdout.trim().split('\n');
    const result = JSON.parse(lines[lines.length - 1] as string) as MigrationResult & {
      store: string;
      pageCheck: { ok: boolean; pages: number; identical: number; rewrittenAfterResume: number; mismatched: number };
    };
    expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true, store: 's3://ferry/pages' });
    const { pageCheck } = result;
    expect(pageCheck).toMatchObject({ ok: true, pages: (256 * 2 ** 20) / 4096, mismatched: 0 });
    expect(pageCheck.identical + pageCheck.rewrittenAfterResume).toBe(pageCheck.pages);

    // The hosts keep ownership in the bucket: the VM now running on h2 is recorded there.
    const store = openPageStore(EMBEDDED_S3_STORE, env);
    try {
      expect(await store.readOwner(vmId)).toMatchObject({ vmId, hostId: 'h2' });

      const onDirectory = await runCli(env, ['up']);
      expect(onDirectory.code).toBe(EXIT.conflict);
      expect(onDirectory.stderr).toContain(`is up on store ${EMBEDDED_S3_STORE}`);
      expect(onDirectory.stderr).toContain(`not on ${path.join(stateDir, 'store')}`);
      expect(onDirectory.stderr).toContain('run `ferry down` first');

      const down = await runCli(env, ['down']);
      // On Node 20 the AWS SDK warns about its Node support on stderr; ferry itself says nothing there.
      expect(down.stderr).not.toMatch(/^ferry:/m);
      expect(down.code).toBe(0);
      expect(down.stdout).not.toContain('left in');
      expect(down.stdout).toMatch(/seaweedfs stopped/);
      expect(weedProcesses()).toEqual([]);

      // Started again on the data `ferry down` kept, the bucket no longer holds the stopped VM's record.
      await startEmbeddedSeaweed(stateDir, s3Environment(env), EMBEDDED_S3_BUCKET);
      expect(await store.readOwner(vmId)).toBeUndefined();
    } finally {
      store.close();
      await stopSeaweedServer({ stateDir, stopGraceMs: 1_000 });
    }
  }, 300_000);
});
