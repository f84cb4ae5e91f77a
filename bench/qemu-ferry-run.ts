/**
 * One run of ferry's migration of a QEMU guest in the QEMU bench part: a fresh guest on h1
 * (driver qemu, the bench's workload) migrated to h2 by the migrateVm workflow with the source
 * kept stunned (`keepSourceAfterSwitchover`, other policy defaults, the cluster's directory store).
 *
 * Measured as QEMU's own migration is (qemu-own-run.ts): total from the start of the migration
 * (just before the workflow is started) to the destination QEMU's RESUME event, downtime from the
 * source QEMU's last STOP event (the switchover's; throttle slices come earlier) to that RESUME;
 * both read from the VMMs' `status` (hypervisorEvents) right after the result, before anything
 * else could pause either guest. Then the stunned source's RAM and the destination's RAM at resume
 * are compared byte for byte (compareMigratedMemory, driver qemu), and the destination's guest
 * program must have gone on from the source's heartbeat, intact.
 *
 * With `killNatsAtHalf`, nats-server is SIGKILLed once the destination has applied half the
 * guest's pages (engine `migration.incomingStatus`), and the migration must finish from the page
 * file; the caller restarts nats-server afterwards. Both VMs are destroyed before this returns; a
 * failure is returned as `error`, never thrown.
 */
import type { FerryClient } from '../cli/ferry-client';
import type { TestCluster } from '../harness/test-cluster';
import type { EngineResults } from '../data-plane/engine-methods';
import { compareMigratedMemory } from '../verification';
import { SimulatedDriver } from '../vmm/driver';
import type { VmmStatus } from '../vmm/vmm-methods';
import type { Workload } from '../vmm/workload';
import type { MigrationResult, RoundSummary, SwitchoverSummary } from '../workflows/types';
import { nowUs } from './qemu-guest-watch';

const PAGE_BYTES = 4096;
const POLL_MS = 100;
const NATS_KILL_POLL_MS = 10;

/** What the run needs. */
export interface QemuFerryRunInput {
  ferry: FerryClient;
  cluster: TestCluster;
  run: number;
  memoryBytes: number;
  workload: Workload;
  warmHeartbeats: number;
  bootTimeoutMs: number;
  killNatsAtHalf?: boolean;
}

/** What one ferry migration of a QEMU guest measured; see the module comment. */
export interface QemuFerryRun {
  run: number;
  natsKilled: boolean;
  ok: boolean;
  error?: string;
  outcome?: MigrationResult['outcome'];
  totalMs?: number;
  downtimeMs?: number;
  /** ferry's own figures from the result. */
  reportedTotalMs?: number;
  reportedDowntimeMs?: number;
  rounds?: number;
  roundsDetail?: RoundSummary[];
  switchover?: SwitchoverSummary;
  /**
   * Total less the rounds' durations and the downtime: mostly prepare (the destination VMM and its
   * QEMU starting) before round 0, where QEMU's own migration has its destination started already.
   */
  outsideRoundsMs?: number;
  bytesViaNetwork?: number;
  bytesMirroredToStore?: number;
  bytesViaStore?: number;
  verified?: boolean;
  incidents?: number;
  /** Pages differing between the stunned source's RAM and the destination's at resume. */
  differingPages?: number;
  pagesCompared?: number;
  firstDifferingPages?: number[];
  /** With killNatsAtHalf: pages the destination had applied when nats-server was killed, and when. */
  pagesAppliedAtKill?: number;
  killedAtMs?: number;
  /** The destination's guest program went on from the source's heartbeat with state ok and bad 0. */
  guestCarriedOn?: boolean;
  sourceLastSeq?: number;
  destinationSeq?: number;
}

async function vmmCall<T>(
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

function status(cluster: TestCluster, hostId: string, vmId: string): Promise<VmmStatus> {
  return vmmCall<VmmStatus>(cluster, hostId, vmId, 'status');
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForHeartbeats(input: QemuFerryRunInput, vmId: string): Promise<void> {
  const deadline = Date.now() + input.bootTimeoutMs;
  while (Date.now() < deadline) {
    const s = await status(input.cluster, 'h1', vmId).catch(() => undefined);
    if ((s?.guest?.seq ?? -1) >= input.warmHeartbeats) return;
    await sleep(POLL_MS);
  }
  throw new Error(`guest ${vmId} did not reach heartbeat ${input.warmHeartbeats} in ${input.bootTimeoutMs} ms`);
}

/** Kills nats-server once h2 has applied half the guest's pages; resolves with what it saw then. */
async function killNatsAtHalf(
  input: QemuFerryRunInput,
  vmId: string,
  workflowId: string,
  startUs: number,
): Promise<{ pagesApplied: number; atMs: number }> {
  const half = input.memoryBytes / PAGE_BYTES / 2;
  const prefix = `${workflowId.replace(/[^A-Za-z0-9_-]/g, '_')}-`;
  const deadline = Date.now() + input.bootTimeoutMs;
  while (Date.now() < deadline) {
    const applied = await vmmCall<EngineResults['migration.activeIncoming']>(
      input.cluster,
      'h2',
      vmId,
      'migration.activeIncoming',
    )
      .then(({ migrationIds }) => migrationIds.find((id) => id.startsWith(prefix)))
      .then((migrationId) =>
        migrationId === undefined
          ? undefined
          : vmmCall<EngineResults['migration.incomingStatus']>(input.cluster, 'h2', vmId, 'migration.incomingStatus', {
              migrationId,
            }),
      )
      .catch(() => undefined);
    if (applied && applied.pagesApplied >= half) {
      input.cluster.nats.kill('SIGKILL');
      return { pagesApplied: applied.pagesApplied, atMs: (nowUs() - startUs) / 1000 };
    }
    await sleep(NATS_KILL_POLL_MS);
  }
  throw new Error(`the destination did not apply ${half} pages in ${input.bootTimeoutMs} ms`);
}

async function endedResult(
  ferry: FerryClient,
  workflowId: string,
): Promise<{ result: MigrationResult; reason?: string }> {
  try {
    return { result: await ferry.result(workflowId) };
  } catch (error) {
    const result = (error as { result?: MigrationResult }).result;
    if (!result) throw error;
    return { result, reason: (error as Error).message };
  }
}

/** Runs ferry's migration of a fresh QEMU guest once; see the module comment. Never throws. */
export async function ferryQemuMigration(input: QemuFerryRunInput): Promise<QemuFerryRun> {
  const { ferry, cluster, run } = input;
  const vmId = `qbench-ferry-${run}${input.killNatsAtHalf ? '-natskill' : ''}`;
  const figures: QemuFerryRun = { run, natsKilled: input.killNatsAtHalf === true, ok: false };
  try {
    await ferry.createVm('h1', { vmId, memoryBytes: input.memoryBytes, workload: input.workload, driver: 'qemu' });
    await waitForHeartbeats(input, vmId);
    const startUs = nowUs();
    const workflowId = await ferry.startMigration({
      vmId,
      sourceHost: 'h1',
      destinationHost: 'h2',
      policy: { keepSourceAfterSwitchover: true },
    });
    if (input.killNatsAtHalf) {
      const killed = await killNatsAtHalf(input, vmId, workflowId, startUs);
      figures.pagesAppliedAtKill = killed.pagesApplied;
      figures.killedAtMs = killed.atMs;
    }
    const { result, reason } = await endedResult(ferry, workflowId);
    Object.assign(figures, {
      outcome: result.outcome,
      reportedTotalMs: result.totalMs,
      reportedDowntimeMs: result.downtimeMs,
      rounds: result.rounds.length,
      roundsDetail: result.rounds,
      ...(result.switchover ? { switchover: result.switchover } : {}),
      bytesViaNetwork: result.bytesViaNetwork,
      bytesMirroredToStore: result.bytesMirroredToStore,
      bytesViaStore: result.bytesViaStore,
      verified: result.verified,
      incidents: result.incidents.length,
    });
    if (result.outcome !== 'completed') throw new Error(`migration ended ${result.outcome}: ${reason ?? ''}`);
    const [source, destination] = [await status(cluster, 'h1', vmId), await status(cluster, 'h2', vmId)];
    const stopUs = source.hypervisorEvents?.lastStopUs;
    const resumeUs = destination.hypervisorEvents?.lastResumeUs;
    if (stopUs === undefined || resumeUs === undefined)
      throw new Error(`no STOP (${stopUs}) on the source or RESUME (${resumeUs}) on the destination`);
    figures.totalMs = (resumeUs - startUs) / 1000;
    figures.downtimeMs = (resumeUs - stopUs) / 1000;
    figures.outsideRoundsMs =
      figures.totalMs - figures.downtimeMs - result.rounds.reduce((sum, r) => sum + r.durationMs, 0);

    const check = await compareMigratedMemory(ferry, {
      vmId,
      sourceHost: 'h1',
      destinationHost: 'h2',
      dir: `${cluster.env.stateDir}/dumps`,
      driver: 'qemu',
    });
    figures.differingPages = check.mismatched.length;
    figures.pagesCompared = check.pages;
    figures.firstDifferingPages = check.mismatched.slice(0, 16);
    const atStun = (await status(cluster, 'h1', vmId)).guest;
    const after = (await status(cluster, 'h2', vmId)).guest;
    if (atStun) figures.sourceLastSeq = atStun.seq;
    if (after) figures.destinationSeq = after.seq;
    figures.guestCarriedOn =
      atStun !== undefined && after !== undefined && after.seq > atStun.seq && after.state === 'ok' && after.bad === 0;
    figures.ok = true;
  } catch (error) {
    figures.error = (error as Error).message;
  } finally {
    for (const host of cluster.hosts) await ferry.destroyVm(host, vmId).catch(() => undefined);
  }
  return figures;
}
