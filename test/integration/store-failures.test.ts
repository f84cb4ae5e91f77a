/**
 * A store that fails while a destination is settled, with real processes: a destination VMM in
 * incoming mode (SimulatedDriver), a real nats-server, a directory store, and the host agent's real
 * activities called in process. The store's mailbox is made unreadable on disk: the `control`
 * folder is replaced by a file, so every read of a message fails with ENOTDIR (the tests run as
 * root, for whom a chmod does not make anything unreadable). Then, on the time-skipping server with
 * hosts implementing HostActivities, what migrateVm reports when such a destination cannot be
 * settled and the source is gone.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { createActivities } from '../../activities';
import type { HostActivities } from '../../activities/types';
import type { RoundStats, SwitchoverStats } from '../../model/protocol';
import { CONTROL_TASK_QUEUE } from '../../temporal-config';
import { migrateVm } from '../../workflows';
import type { MigrationResult } from '../../workflows/types';
import {
  failureOf,
  fakeHosts,
  heartbeating,
  NOT_IN_A_MIGRATION,
  useTimeSkipping,
  withWorkers,
} from './support/time-skipping';
import { makeTestStateDir, startTestNats, type TestNats } from '../../harness/test-services';
import { newKeyNonce } from '../../data-plane/migration-key';
import { DEFAULT_ANSWER_LIMIT_MS } from '../../store/store-answer';
import { SimulatedDriver } from '../../vmm/driver';
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { VmRecordStore } from '../../vmm/vm-records';

jest.setTimeout(DEFAULT_ANSWER_LIMIT_MS + 60_000);

const MEMORY_BYTES = 256 * PAGE_SIZE_BYTES;
const VM = 'vm-settle';
const MIGRATION = 'm-settle';

let nats: TestNats;
let stateDir: string;
let storeDir: string;
let driver: SimulatedDriver;

beforeAll(async () => {
  nats = await startTestNats();
  stateDir = makeTestStateDir();
  storeDir = path.join(stateDir, 'store');
  driver = new SimulatedDriver({ hostId: 'h2', stateDir });
});

afterAll(async () => {
  for (const vm of await driver.listVms()) await driver.destroyVm(vm.vmId);
  await nats.stop();
  await fs.rm(stateDir, { recursive: true, force: true });
});

function vmmLog(): string {
  return new VmRecordStore(path.join(stateDir, 'hosts', 'h2', 'vms')).paths(VM).log;
}

test('a destination whose store cannot say whether the source handed over is kept, and removed once the store answers', async () => {
  const activities = createActivities({
    hostId: 'h2',
    driver,
    nats: { url: nats.url },
    defaultStore: storeDir,
    storeRoots: [storeDir],
    dumpsDir: path.join(stateDir, 'dumps'),
    clusterSecretFile: path.join(stateDir, 'cluster.key'),
  });
  const ref = { vmId: VM, migrationId: MIGRATION };
  await activities.prepareDestination({ ...ref, memoryBytes: MEMORY_BYTES, store: storeDir });
  const vmm = await driver.control(VM);
  try {
    await vmm.call('migration.startIncoming', {
      migrationId: MIGRATION,
      nats: { url: nats.url },
      store: storeDir,
      hostId: 'h2',
      sourceHost: 'h1',
      baseEpoch: 1,
      creditWindow: 8,
      key: randomBytes(32).toString('base64'),
    });
  } finally {
    vmm.close();
  }
  // The migration's folder exists (the source created its page file); its mailbox cannot be read.
  const control = path.join(storeDir, 'migrations', MIGRATION, 'control');
  await fs.mkdir(path.dirname(control), { recursive: true });
  await fs.writeFile(control, 'not a folder');

  const startedAt = Date.now();
  const outcome = await activities.abortDestination(ref).then(
    (result) => ({ resolved: result }),
    (err: unknown) => err,
  );

  expect(outcome).toMatchObject({ type: 'VmStateUnknown', nonRetryable: true });
  // The destination, which may hold the VM's only copy, is still there and still receiving.
  expect(await driver.getVm(VM)).toMatchObject({ vmId: VM, mode: 'incoming' });
  // It asked the store again and again for the whole limit before giving up.
  expect(Date.now() - startedAt).toBeGreaterThanOrEqual(DEFAULT_ANSWER_LIMIT_MS - 2_000);
  expect(readFileSync(vmmLog(), 'utf8')).toMatch(/settle: reading the mailbox failed \(attempt 5\)/);

  // The store answers again, and says no final request was posted: now the copy may go.
  await fs.rm(control);
  await expect(activities.abortDestination(ref)).resolves.toEqual({ resumed: false });
  expect(await driver.getVm(VM)).toBeUndefined();
});

describe('migrateVm when the destination cannot be settled', () => {
  const ts = useTimeSkipping();

  it("reports the VM's state as unknown and keeps the page file when the source is gone", async () => {
    const unknown = (): ApplicationFailure =>
      ApplicationFailure.create({
        message: 'the store did not answer whether the source of migration m posted its final request',
        type: 'VmStateUnknown',
        nonRetryable: true,
      });
    const round = (n: number): RoundStats => ({
      round: n,
      dirtyPagesAtStart: 16,
      pagesSent: 16,
      zeroPages: 0,
      bytesSent: 16 * PAGE_SIZE_BYTES,
      durationMs: 100,
      throughputBytesPerSec: 100 * 2 ** 20,
      pendingDirtyPages: 0,
      dirtyRateBytesPerSec: 0,
      storeLagBytes: 0,
      lane: 'network',
      vcpu: { state: 'running', throttlePercent: 0, workUnits: 0, pagesWritten: 0, runMs: 0, throttledMs: 0 },
    });
    const hosts = fakeHosts({
      ...NOT_IN_A_MIGRATION,
      prepareSource: async () => ({
        pageCount: 16,
        memoryBytes: 16 * PAGE_SIZE_BYTES,
        store: '/shared/ferry',
        baseEpoch: 1,
        workload: { type: 'idle' },
        keyNonce: newKeyNonce(),
      }),
      prepareDestination: async () => ({ activityAttempt: 1 }),
      receivePages: async () => heartbeating(() => new Promise<never>(() => undefined)),
      sendRound: async ({ round: n }) => round(n),
      setSourceThrottle: async ({ percent }) => ({ percent }),
      switchover: async (): Promise<SwitchoverStats> => {
        throw ApplicationFailure.nonRetryable('the VMM of VM vm-s on host h1 exited', 'VmmExited');
      },
      settleDestination: async () => {
        throw unknown();
      },
      rollbackSource: async () => {
        throw ApplicationFailure.nonRetryable('the VMM of VM vm-s on host h1 exited', 'VmmExited');
      },
      abortDestination: async () => {
        throw unknown();
      },
      recordVmHistory: async () => undefined,
      releaseSource: async () => undefined,
      removeMigrationFiles: async () => undefined,
      finishDestination: async () => undefined,
    } satisfies Omit<HostActivities, 'ping'>);

    const error = await withWorkers(ts, hosts, async () =>
      failureOf(
        await ts.env.client.workflow.start(migrateVm, {
          taskQueue: CONTROL_TASK_QUEUE,
          workflowId: `unknown-state-${Date.now()}`,
          args: [{ vmId: 'vm-s', sourceHost: 'h1', destinationHost: 'h2', policy: { throttle: 'none' } }],
        }),
      ),
    );

    const result = (error.cause as ApplicationFailure).details?.[0] as MigrationResult;
    expect(result).toMatchObject({ outcome: 'failed', runningOn: null });
    expect(result.reason).toMatch(/the VM's state is unknown: the destination h2 could not be settled/);
    expect(result.reason).toContain('its paused copy and the page file are kept');
    expect(hosts.h2.abortDestination).toHaveBeenCalled();
    expect(hosts.h1.removeMigrationFiles).not.toHaveBeenCalled();
  });
});
