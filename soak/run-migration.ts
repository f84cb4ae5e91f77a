/**
 * One soak migration: a fresh running guest, its migration with an optional fault, the checks of
 * checks.ts, and the guest's removal. The cluster is made whole again (workers restarted, a killed
 * nats-server brought back) before the next migration, so the runs stay independent.
 */
import { WorkflowFailedError } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import { ApplicationFailure } from '@temporalio/common';
import { migrationWorkflowId, type FerryClient } from '../cli/ferry-client';
import type { TestCluster } from '../harness/test-cluster';
import type { Workload } from '../vmm/workload';
import type { MigrationResult } from '../workflows/types';
import { checkMigration, type MigrationEnd } from './checks';
import type { FaultContext, SoakFault, SoakOutcome } from './faults';
import type { SeededRandom } from './seeded-random';
import { CopiesWatch } from './copies-watch';
import { forgeryProblem } from './report';
import { FaultMissedError } from './errors';
import { connectForger, recordOneBatch, type RecordedBatch } from './forger';
import { pagesFlowing } from './vmm-probe';

/** Memory of each soak guest (bytes). */
export const GUEST_MEMORY_BYTES = 256 * 2 ** 20;
/** What each soak guest runs: a small hot set rewritten steadily, so later rounds have work. */
export const GUEST_WORKLOAD: Workload = { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 4 * 2 ** 20 };
/** A migration that has not ended after this long is reported as hung and terminated (ms). */
export const MIGRATION_TIMEOUT_MS = 120_000;

/** The cluster and the tools a soak migration runs with. */
export interface SoakEnv {
  cluster: TestCluster;
  ferry: FerryClient;
  random: SeededRandom;
  precopyWindowMs: number;
  /** The latest page batch the soak recorded, from an earlier migration (for the replay fault). */
  recordedBatch?: RecordedBatch;
}

/** One row of the soak's table. */
export interface SoakRow {
  vmId: string;
  fault: string;
  /** Item of issue 4's fault list, 0 for a fault-free run. */
  item: number;
  moment: string;
  /** True when the fault came due after its moment and was not injected (see FaultMissedError). */
  missed: boolean;
  sourceHost: string;
  destinationHost: string;
  /** The migration ran with `policy.encrypt` (pages sealed on the stream and in the page file). */
  encrypted: boolean;
  outcome: SoakOutcome;
  /** The workflow's own outcome and reason. */
  workflowOutcome: string;
  reason: string;
  /** Hosts where a copy runs at the end, joined with '+', or '-'. */
  runningOn: string;
  /** Start of the migration to the end of its workflow, by wall clock (ms). */
  totalMs: number;
  /** Sum of the pre-copy rounds' durations (ms). */
  precopyMs: number;
  corruptedPages: number;
  /** Forged messages its fault sent; undefined when the fault forges nothing by design. */
  forgedMessages: number | undefined;
  /** Messages the hosts dropped as not authentic (the result's `rejectedMessages`). */
  rejectedMessages: number;
  copiesRunning: number;
  twoCopiesEvents: number;
  /** Longest time no copy of the guest was seen running (see CopiesSeen). */
  longestNoCopyMs: number;
  /** False when the outcome is not one the fault allows, or a check found a problem. */
  expected: boolean;
  problems: string[];
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The MigrationResult a failed migration carries as its failure's details. Read here rather than
 * through FerryClient.result, which keeps it only for failures it maps to exit code 4.
 */
function failedResult(err: WorkflowFailedError): MigrationResult | undefined {
  const details = err.cause instanceof ApplicationFailure ? err.cause.details : undefined;
  const result = details?.[0] as MigrationResult | undefined;
  return typeof result === 'object' && result !== null && 'outcome' in result ? result : undefined;
}

/**
 * Waits for the workflow's end. A failed migration's result comes with its error; a lost
 * connection (the Temporal server was killed) is retried until `timeoutMs`, after which the
 * workflow is terminated and reported as hung.
 */
async function waitForEnd(ferry: FerryClient, workflowId: string, timeoutMs: number): Promise<MigrationEnd> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  while (Date.now() < deadline) {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), deadline - Date.now())));
    try {
      const result = await Promise.race([ferry.client.workflow.getHandle(workflowId).result(), timeout]);
      if (result !== 'timeout') return { result: result as MigrationResult, error: undefined, hung: false };
    } catch (err) {
      if (err instanceof WorkflowFailedError) {
        const error = err.cause?.message ?? err.message;
        return { result: failedResult(err), error, hung: false };
      }
      lastError = err instanceof Error ? err.message : String(err);
      await sleep(1_000);
    } finally {
      clearTimeout(timer);
    }
  }
  await ferry.client.workflow
    .getHandle(workflowId)
    .terminate(`soak: no end within ${timeoutMs} ms`)
    .catch(() => undefined);
  return { result: undefined, error: lastError || `no end within ${timeoutMs} ms`, hung: true };
}

/**
 * The forger of one migration: connected on first use (to nats-server directly, not through the
 * proxy the stall faults freeze), closed by `close`. A soak without a NATS admin user has none.
 */
function migrationForger(cluster: TestCluster): { get(): Promise<NatsConnection>; close(): Promise<void> } {
  let connecting: Promise<NatsConnection> | undefined;
  return {
    get: () => (connecting ??= connectForger(cluster.nats)),
    close: async () => {
      const nc = await connecting?.catch(() => undefined);
      await nc?.close().catch(() => undefined);
    },
  };
}

/**
 * Records the first batch of the next migration from `sourceHost` to `destinationHost` into
 * `env.recordedBatch`, for a later migration's replay fault; best effort (a soak whose NATS has
 * no admin user records nothing, and the replay fault says so).
 */
async function recordNextBatch(
  env: SoakEnv,
  forger: () => Promise<NatsConnection>,
  sourceHost: string,
  destinationHost: string,
): Promise<void> {
  try {
    const nc = await forger();
    void recordOneBatch(nc, `ferry.${sourceHost}.${destinationHost}.*.pages`).then(
      (batch) => (env.recordedBatch = batch),
      () => undefined,
    );
    await nc.flush();
  } catch {
    // Nothing recorded: see above.
  }
}

/** Restarts any worker of the cluster that is not running (a no-op for those that run). */
async function restartMissingWorkers(cluster: TestCluster): Promise<void> {
  for (const name of ['orchestrator', ...cluster.hosts.map((h) => `host-${h}`)]) await cluster.restartWorker(name);
}

/** Runs one migration of a new guest `vmId` from `sourceHost` to `destinationHost`, with `fault` if given. */
export async function runSoakMigration(
  env: SoakEnv,
  spec: {
    vmId: string;
    sourceHost: string;
    destinationHost: string;
    seed: number;
    fault?: SoakFault;
    encrypt?: boolean;
  },
): Promise<SoakRow> {
  const { cluster, ferry } = env;
  const { vmId, sourceHost, destinationHost, fault } = spec;
  const workflowId = migrationWorkflowId(vmId);
  const forger = migrationForger(cluster);
  const ctx: FaultContext = {
    ...env,
    vmId,
    workflowId,
    sourceHost,
    destinationHost,
    forger: forger.get,
    earlierBatch: env.recordedBatch,
    forged: { messages: 0 },
  };
  const problems: string[] = [];
  await ferry.createVm(sourceHost, {
    vmId,
    memoryBytes: GUEST_MEMORY_BYTES,
    workload: GUEST_WORKLOAD,
    seed: spec.seed,
  });
  let moment = '-';
  let missed = false;
  if (fault?.beforeStart) {
    moment = await fault.beforeStart(ctx).catch((err: Error) => {
      problems.push(`fault not armed: ${err.message}`);
      return 'not armed';
    });
  }

  await recordNextBatch(env, forger.get, sourceHost, destinationHost);
  const watch = new CopiesWatch(cluster.env, [sourceHost, destinationHost], vmId);
  const startedAt = Date.now();
  let endedAt = 0;
  let end: MigrationEnd;
  try {
    const encrypt = spec.encrypt === true ? { encrypt: true } : {};
    await ferry.startMigration({
      vmId,
      sourceHost,
      destinationHost,
      policy: { keepSourceAfterSwitchover: true, ...encrypt },
    });
    const ending = waitForEnd(ferry, workflowId, MIGRATION_TIMEOUT_MS).finally(() => (endedAt = Date.now()));
    if (fault?.whileFlowing) {
      try {
        await pagesFlowing(cluster.env, destinationHost, vmId, workflowId, () => endedAt !== 0);
        moment = await fault.whileFlowing(ctx);
      } catch (err) {
        if (err instanceof FaultMissedError) {
          missed = true;
          moment = `missed (${err.phase})`;
        } else {
          moment = 'not injected';
          problems.push(`fault not injected: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
    end = await ending;
  } finally {
    // Stopped here, not later: the checks pause vCPUs, which the watch would count as a pause.
    await watch.stop();
  }
  const seen = await watch.stop();
  await fault?.afterEnd?.(ctx);
  await forger.close();
  await restartMissingWorkers(cluster);

  const check = await checkMigration({ cluster, ferry, vmId, sourceHost, destinationHost }, end);
  problems.push(...check.problems);
  const rejectedMessages = end.result?.rejectedMessages ?? 0;
  const forges = fault?.forges === true && !missed && moment !== 'not injected';
  const forgery = forges ? forgeryProblem(ctx.forged.messages, rejectedMessages, check.outcome) : undefined;
  if (forgery !== undefined) problems.push(forgery);
  for (const host of [sourceHost, destinationHost]) {
    await ferry.destroyVm(host, vmId).catch((err: Error) => problems.push(`destroy on ${host}: ${err.message}`));
  }
  const allowed = fault && !missed ? fault.expected : ['completed'];
  const twoCopies = seen.overlaps > 0 || check.runningHosts.length > 1;
  return {
    vmId,
    fault: fault?.name ?? 'none',
    item: fault?.item ?? 0,
    moment,
    missed,
    sourceHost,
    destinationHost,
    encrypted: spec.encrypt === true,
    outcome: check.outcome,
    workflowOutcome: end.result?.outcome ?? (end.hung ? 'hung' : 'unknown'),
    reason: end.result?.reason ?? end.error ?? '',
    runningOn: check.runningHosts.join('+') || '-',
    totalMs: endedAt - startedAt,
    precopyMs: Math.round((end.result?.rounds ?? []).reduce((sum, r) => sum + r.durationMs, 0)),
    corruptedPages: check.corruptedPages,
    forgedMessages: fault?.forges === true ? ctx.forged.messages : undefined,
    rejectedMessages,
    copiesRunning: check.runningHosts.length,
    twoCopiesEvents: twoCopies ? 1 : 0,
    longestNoCopyMs: seen.longestNoCopyMs,
    expected: allowed.includes(check.outcome) && problems.length === 0 && !twoCopies,
    problems,
  };
}
