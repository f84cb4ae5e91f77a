/**
 * Shared fixture of the integration tests: one real cluster per test file (see
 * harness/test-cluster.ts), a FerryClient on it, and small probes into the VMMs.
 */
import { startTestCluster, type TestCluster, type TestClusterOptions } from '../../../harness/test-cluster';
import { FerryClient } from '../../../cli/ferry-client';
import { SimulatedDriver } from '../../../vmm/driver';
import { compareMigratedMemory, type MigratedMemoryCheck } from '../../../verification';
import type { MigrationResult } from '../../../workflows/types';
import type { MigrationOptions } from '../../../workflows/policy';
import {
  callEngine,
  type EngineMethod,
  type EngineParams,
  type EngineResults,
} from '../../../data-plane/engine-methods';

/** What a test file gets: filled in by `beforeAll`. */
export interface ClusterFixture {
  cluster: TestCluster;
  ferry: FerryClient;
}

/**
 * The store the suite runs on unless a file names one: FERRY_TEST_STORE=s3 runs it on a SeaweedFS
 * store (harness/run-tests.ts runs the integration suite once per store).
 */
export function suiteStore(): 'directory' | 's3' {
  return process.env['FERRY_TEST_STORE'] === 's3' ? 's3' : 'directory';
}

/** Starts a cluster before the file's tests and stops it after them. */
export function useCluster(
  opts: { natsMaxPendingBytes?: number; hosts?: string[] } & Pick<TestClusterOptions, 'store'> = {},
): ClusterFixture {
  const fixture = {} as ClusterFixture;
  const { hosts = ['h1', 'h2'], store = suiteStore(), ...rest } = opts;
  const clusterOptions: TestClusterOptions = { ...rest, store };
  beforeAll(async () => {
    fixture.cluster = await startTestCluster(hosts, clusterOptions);
    fixture.ferry = await FerryClient.connect(fixture.cluster.temporal.address);
  });
  afterAll(async () => {
    await fixture.ferry?.close();
    await fixture.cluster?.stop();
  });
  return fixture;
}

/** Calls engine method `method` on the VMM of `vmId` on `hostId`, typed by data-plane/engine-methods.ts. */
export function engineCall<M extends EngineMethod>(
  cluster: TestCluster,
  hostId: string,
  vmId: string,
  method: M,
  ...params: undefined extends EngineParams<M> ? [EngineParams<M>?] : [EngineParams<M>]
): Promise<EngineResults[M]> {
  return callEngine((name, p) => vmmCall(cluster, hostId, vmId, name, p), method, ...params);
}

/** Calls `method` on the VMM of `vmId` on `hostId`, as its host agent would. */
export async function vmmCall<T>(
  cluster: TestCluster,
  hostId: string,
  vmId: string,
  method: string,
  params?: unknown,
): Promise<T> {
  const client = await new SimulatedDriver({ hostId, stateDir: cluster.env.stateDir }).control(vmId);
  try {
    return await client.call<T>(method, params);
  } finally {
    client.close();
  }
}

/**
 * Resolves with the destination VMM's pid once it has applied a page batch of the migration run by
 * workflow `workflowId` (its migration id is the workflow id plus a run suffix); the destination
 * is `destinationHost`, h2 unless given.
 */
export async function pagesFlowing(
  cluster: TestCluster,
  vmId: string,
  workflowId: string,
  destinationHost = 'h2',
): Promise<number> {
  const driver = new SimulatedDriver({ hostId: destinationHost, stateDir: cluster.env.stateDir });
  const prefix = `${workflowId.replace(/[^A-Za-z0-9_-]/g, '_')}-`;
  for (let i = 0; i < 2_000; i += 1) {
    const record = await driver.getVm(vmId);
    // The record appears when the VMM is spawned, its socket a moment later.
    const status = record
      ? await engineCall(cluster, destinationHost, vmId, 'migration.activeIncoming')
          .then(({ migrationIds }) => migrationIds.find((id) => id.startsWith(prefix)))
          .then((migrationId) =>
            migrationId === undefined
              ? undefined
              : engineCall(cluster, destinationHost, vmId, 'migration.incomingStatus', { migrationId }),
          )
          .catch(() => undefined)
      : undefined;
    if (record && status && status.batches > 0) return record.pid;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no page of migration ${workflowId} reached the destination`);
}

/**
 * Starts a 512 MiB guest with a small hot set on h1 and its migration to h2, keeping the source
 * stunned afterwards for the page-by-page check; resolves with the migration's workflow id once
 * pages flow to the destination, so a fault injected next lands mid pre-copy.
 */
export async function migrateNewGuest(
  fx: ClusterFixture,
  vmId: string,
  seed: number,
  policy: MigrationOptions = {},
): Promise<{ workflowId: string; destinationPid: number }> {
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 512 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 4 * 2 ** 20 },
    seed,
  });
  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: { keepSourceAfterSwitchover: true, ...policy },
  });
  return { workflowId, destinationPid: await pagesFlowing(fx.cluster, vmId, workflowId) };
}

/**
 * Asserts that `vmId`'s memory on h2 matches its stunned source copy on h1 page by page (see
 * verification/compare-migrated.ts); returns the comparison.
 */
export async function expectSameMemory(fx: ClusterFixture, vmId: string): Promise<MigratedMemoryCheck> {
  const check = await compareMigratedMemory(fx.ferry, {
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    dir: `${fx.cluster.env.stateDir}/dumps`,
  });
  expect(check.details).toEqual([]);
  expect(check.ok).toBe(true);
  expect(check.sourceState).not.toBe('running');
  return check;
}

/** The migration's result, whether it completed or ended otherwise (then from the failure's details). */
export async function endedResult(fx: ClusterFixture, workflowId: string): Promise<MigrationResult> {
  try {
    return await fx.ferry.result(workflowId);
  } catch (err) {
    const result = (err as { result?: MigrationResult }).result;
    if (!result) throw err;
    return result;
  }
}

/** Hosts of the cluster on which a copy of `vmId` runs (its VMM's vCPU is running). */
export async function runningCopies(fx: ClusterFixture, vmId: string): Promise<string[]> {
  const states = await Promise.all(
    fx.cluster.hosts.map(async (hostId) => {
      const status = await vmmCall<{ vcpu: { state: string } }>(fx.cluster, hostId, vmId, 'status').catch(
        () => undefined,
      );
      return status?.vcpu.state === 'running' ? hostId : undefined;
    }),
  );
  return states.filter((h): h is string => h !== undefined);
}
