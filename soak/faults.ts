/**
 * The faults of the soak (issue 4's list), each with the outcomes it may end in. A timed fault
 * lands at a random moment after pages start flowing, within the pre-copy; a hook fault is armed
 * on a VMM's one-shot fault point (`migration.armFault`) and fires at that exact point of the
 * switchover. Every fault is real: processes get real signals, services really restart.
 */
import type { NatsConnection } from 'nats';
import type { FerryClient } from '../cli/ferry-client';
import type { FaultSpec } from '../data-plane';
import type { TcpProxy } from '../infra/tcp-proxy';
import type { TestCluster } from '../harness/test-cluster';
import { FaultMissedError } from './errors';
import type { RecordedBatch } from './forger';
import type { SeededRandom } from './seeded-random';
import { liveVmm, engineCall } from './vmm-probe';

/** How a soak migration ended, as seen from the workflow and the hosts. */
export type SoakOutcome = 'completed' | 'rolledBack' | 'cancelled' | 'failedVmLost' | 'failed' | 'hung';

/** What a fault may touch while its migration runs. */
export interface FaultContext {
  cluster: TestCluster;
  ferry: FerryClient;
  vmId: string;
  workflowId: string;
  sourceHost: string;
  destinationHost: string;
  random: SeededRandom;
  /** Latest moment after the first page batch at which a timed fault lands (ms); within the pre-copy. */
  precopyWindowMs: number;
  /** This migration's forger (soak/forger.ts): connected on first use, closed once the migration ended. */
  forger(): Promise<NatsConnection>;
  /** A page batch recorded from an earlier migration of the soak, if one was recorded. */
  earlierBatch: RecordedBatch | undefined;
  /** Forged messages the fault sent so far; each must be dropped and counted as rejected. */
  forged: { messages: number };
}

/** One kind of fault. Each step returns the moment it struck, as shown in the table. */
export interface SoakFault {
  name: string;
  /** Its item in issue 4's list of faults (11: issue 11's forged messages). */
  item: number;
  /** Outcomes that are correct for it; any other is reported as unexpected. */
  expected: readonly SoakOutcome[];
  /** True when it needs the VMMs' `migration.armFault` method. */
  hook: boolean;
  /** True when it sends forged messages: its migration must count them as rejected (`forged`). */
  forges?: boolean;
  /** Before the migration starts (faults armed on the source VMM). */
  beforeStart?(ctx: FaultContext): Promise<string>;
  /** Once the first page batch reached the destination. */
  whileFlowing?(ctx: FaultContext): Promise<string>;
  /** After the migration ended: brings back what the fault left down. */
  afterEnd?(ctx: FaultContext): Promise<void>;
}

/** How long a killed service or worker stays down before its restart, at most (ms). */
const MAX_DOWN_MS = 1_000;
/** How long a stream stalls before it flows again, at most, in the stall that resumes (ms). */
const MAX_STALL_MS = 3_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Where the migration stands, or undefined when the progress query does not answer in time. */
async function progressOf(ctx: FaultContext): Promise<{ phase: string; round: number } | undefined> {
  const timeout = sleep(2_000).then(() => undefined);
  const progress = ctx.ferry.progress(ctx.workflowId).then(
    (p) => ({ phase: p.phase, round: p.round }),
    () => undefined,
  );
  return Promise.race([progress, timeout]);
}

/**
 * Waits a random time within the pre-copy window, then runs `act` if the migration is still in
 * one of `phases` (else throws FaultMissedError). `act` gets a random fraction for how long to
 * hold the fault, drawn up front so that a missed fault leaves the seed's later draws unchanged.
 */
export async function atRandomMoment(
  ctx: FaultContext,
  name: string,
  act: (holdFraction: number) => Promise<void>,
  phases: readonly string[] = ['pre-copy', 'switchover'],
): Promise<string> {
  const delayMs = ctx.random.int(0, ctx.precopyWindowMs);
  const holdFraction = ctx.random.next();
  await sleep(delayMs);
  const progress = await progressOf(ctx);
  const where = progress ? `${progress.phase} r${progress.round}` : 'phase ?';
  if (progress && !phases.includes(progress.phase)) throw new FaultMissedError(name, where);
  await act(holdFraction);
  return `+${delayMs}ms ${where}`;
}

async function armFault(ctx: FaultContext, hostId: string, spec: FaultSpec): Promise<string> {
  await engineCall(ctx.cluster.env, hostId, ctx.vmId, 'migration.armFault', spec);
  return `${spec.point} ${spec.action}`;
}

/** The proxy between the host agents and nats-server; the soak's cluster is started with one. */
function natsProxyOf(ctx: FaultContext): TcpProxy {
  if (!ctx.cluster.natsProxy) throw new Error('the soak cluster has no NATS proxy (start it with natsProxy: true)');
  return ctx.cluster.natsProxy;
}

function killWorkerAndRestart(
  name: string,
  worker: (ctx: FaultContext) => string,
): (ctx: FaultContext) => Promise<string> {
  return (ctx) =>
    atRandomMoment(ctx, name, async (hold) => {
      await ctx.cluster.killWorker(worker(ctx), 'SIGKILL');
      await sleep(hold * MAX_DOWN_MS);
      await ctx.cluster.restartWorker(worker(ctx));
    });
}

/** Every fault the soak draws from: issue 4's items 1-9. */
export const SOAK_FAULTS: readonly SoakFault[] = [
  {
    name: 'nats-killed',
    item: 1,
    expected: ['completed'],
    hook: false,
    whileFlowing: (ctx) => atRandomMoment(ctx, 'nats-killed', async () => ctx.cluster.nats.kill('SIGKILL')),
    // Not restarted during its migration; the next migration needs the network lane back.
    afterEnd: (ctx) => ctx.cluster.nats.restart(),
  },
  {
    name: 'nats-restarted',
    item: 2,
    expected: ['completed'],
    hook: false,
    whileFlowing: (ctx) =>
      atRandomMoment(ctx, 'nats-restarted', async (hold) => {
        ctx.cluster.nats.kill('SIGKILL');
        await sleep(hold * MAX_DOWN_MS);
        await ctx.cluster.nats.restart();
      }),
  },
  {
    name: 'stream-stalled',
    item: 3,
    // The path to nats-server silently stops delivering (nothing closes): the page file carries on.
    expected: ['completed'],
    hook: false,
    whileFlowing: (ctx) => atRandomMoment(ctx, 'stream-stalled', async () => natsProxyOf(ctx).stall()),
    afterEnd: async (ctx) => natsProxyOf(ctx).resume(),
  },
  {
    name: 'stream-stalled-resumed',
    item: 3,
    expected: ['completed'],
    hook: false,
    whileFlowing: (ctx) =>
      atRandomMoment(ctx, 'stream-stalled-resumed', async (hold) => {
        natsProxyOf(ctx).stall();
        await sleep(hold * MAX_STALL_MS);
        natsProxyOf(ctx).resume();
      }),
  },
  {
    name: 'dest-agent-killed',
    item: 4,
    expected: ['completed'],
    hook: false,
    whileFlowing: killWorkerAndRestart('dest-agent-killed', (ctx) => `host-${ctx.destinationHost}`),
  },
  {
    name: 'source-agent-killed',
    item: 5,
    expected: ['completed'],
    hook: false,
    whileFlowing: killWorkerAndRestart('source-agent-killed', (ctx) => `host-${ctx.sourceHost}`),
  },
  {
    name: 'orchestrator-killed',
    item: 6,
    expected: ['completed'],
    hook: false,
    whileFlowing: killWorkerAndRestart('orchestrator-killed', () => 'orchestrator'),
  },
  {
    name: 'temporal-killed',
    item: 6,
    expected: ['completed'],
    hook: false,
    whileFlowing: (ctx) =>
      atRandomMoment(ctx, 'temporal-killed', async (hold) => {
        ctx.cluster.temporal.kill('SIGKILL');
        await sleep(hold * MAX_DOWN_MS);
        await ctx.cluster.temporal.restart();
      }),
  },
  {
    name: 'source-vmm-killed-precopy',
    item: 7,
    // The VM's only process died before the page file held it whole: nothing can resume it.
    expected: ['failedVmLost'],
    hook: false,
    whileFlowing: (ctx) =>
      atRandomMoment(
        ctx,
        'source-vmm-killed-precopy',
        async () => {
          const record = await liveVmm(ctx.cluster.env, ctx.sourceHost, ctx.vmId);
          if (!record) throw new Error(`source VMM of ${ctx.vmId} on ${ctx.sourceHost} is already gone`);
          process.kill(record.pid, 'SIGKILL');
        },
        // Once the switchover has begun, whether the file already holds the VM is a race.
        ['pre-copy'],
      ),
  },
  {
    name: 'source-vmm-killed-stun',
    item: 7,
    expected: ['failedVmLost'],
    hook: true,
    beforeStart: (ctx) => armFault(ctx, ctx.sourceHost, { point: 'source.after-stun', action: 'sigkill' }),
  },
  {
    name: 'source-vmm-killed-durable',
    item: 7,
    // Every page and the final manifest are durable in the page file: the destination finishes from it.
    expected: ['completed'],
    hook: true,
    beforeStart: (ctx) => armFault(ctx, ctx.sourceHost, { point: 'source.final-pages-durable', action: 'sigkill' }),
  },
  {
    name: 'dest-dies-before-resume',
    item: 8,
    expected: ['rolledBack'],
    hook: true,
    whileFlowing: (ctx) => armFault(ctx, ctx.destinationHost, { point: 'destination.final', action: 'sigkill' }),
  },
  {
    name: 'source-loses-final-reply',
    item: 8,
    // The destination took ownership and resumed: the VM lives there, the source never resumes.
    expected: ['completed'],
    hook: true,
    beforeStart: (ctx) => armFault(ctx, ctx.sourceHost, { point: 'source.final-reply', action: 'drop' }),
  },
  {
    name: 'cancel',
    item: 9,
    // A cancel that arrives after the switchover began is ignored, and the migration completes.
    expected: ['cancelled', 'completed'],
    hook: false,
    whileFlowing: (ctx) =>
      atRandomMoment(ctx, 'cancel', () => ctx.ferry.cancel(ctx.workflowId, 'soak: cancel at a random moment')),
  },
];
