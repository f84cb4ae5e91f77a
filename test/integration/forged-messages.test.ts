/**
 * Anyone who can reach NATS can publish on a migration's subjects: forged and replayed messages on
 * the real nats-server, each dropped and counted by the host it reaches, while the migration
 * completes, the destination's memory equals the source's page by page, and one copy runs.
 *
 * The guest dirties memory faster than the stream can converge (throttle off, 1 ms downtime
 * limit), so pre-copy lasts until the test calms it: every forged message lands mid pre-copy.
 */
import type { NatsConnection } from 'nats';
import type { IncomingStatus } from '../../data-plane';
import { migrationSubjects } from '../../data-plane/subjects';
import {
  answerControlRequests,
  connectForger,
  forgedCreditMessages,
  forgedFinalMessages,
  forgedSyncMessages,
  garbageBatch,
  malformedControlMessages,
  recordOneBatch,
} from '../../soak/forger';
import type { MigrationResult } from '../../workflows/types';
import { expectSameMemory, runningCopies, useCluster, vmmCall, engineCall } from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster();
let forger: NatsConnection;

beforeAll(async () => {
  // The forger holds the test cluster's admin user (soak/forger.ts): it stops with the cluster.
  forger = await connectForger(fx.cluster.nats);
});

afterAll(async () => {
  await forger?.close();
});

/** Polls `probe` every 20 ms until it returns a value (at most 20 s). */
async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 1_000; i += 1) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function incomingStatus(vmId: string, migrationId: string): Promise<IncomingStatus> {
  return engineCall(fx.cluster, 'h2', vmId, 'migration.incomingStatus', { migrationId });
}

function outgoingRejected(vmId: string, migrationId: string): Promise<number> {
  return engineCall(fx.cluster, 'h1', vmId, 'migration.outgoingProgress', {
    migrationId,
  }).then((p) => p.rejectedMessages);
}

/**
 * Starts a busy 64 MiB guest on h1 and its migration to h2; resolves once batches reach the
 * destination, with the workflow id and the migration id.
 */
async function startBusyMigration(vmId: string, seed: number): Promise<{ workflowId: string; migrationId: string }> {
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 64 * 2 ** 20,
    workload: { type: 'random', rateBytesPerSec: 200e6 },
    seed,
  });
  const workflowId = await fx.ferry.startMigration({
    vmId,
    sourceHost: 'h1',
    destinationHost: 'h2',
    policy: {
      keepSourceAfterSwitchover: true,
      downtimeLimitMs: 1,
      throttle: 'none',
      maxRounds: 200,
      completionBudgetSecPerGiB: 2_000,
      onGiveUp: 'force-switchover',
    },
  });
  const prefix = `${workflowId.replace(/[^A-Za-z0-9_-]/g, '_')}-`;
  const migrationId = await until('batches on the destination', async () => {
    const { migrationIds } = await engineCall(fx.cluster, 'h2', vmId, 'migration.activeIncoming');
    const id = migrationIds.find((m) => m.startsWith(prefix));
    return id !== undefined && (await incomingStatus(vmId, id)).batches > 0 ? id : undefined;
  });
  return { workflowId, migrationId };
}

/** Lets the guest go idle, so the migration converges, and returns its result. */
async function calmAndFinish(vmId: string, workflowId: string): Promise<MigrationResult> {
  await vmmCall(fx.cluster, 'h1', vmId, 'setWorkload', { workload: { type: 'idle' } });
  return fx.ferry.result(workflowId);
}

/** The migration completed, one copy runs (on h2), its memory equals the stunned source's; then both go. */
async function expectOneVerifiedCopy(vmId: string, result: MigrationResult): Promise<void> {
  expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
  expect(result.destinationDigest).toBe(result.sourceDigest);
  expect(await runningCopies(fx, vmId)).toEqual(['h2']);
  await expectSameMemory(fx, vmId);
  await fx.ferry.destroyVm('h1', vmId);
  await fx.ferry.destroyVm('h2', vmId);
}

test('a forged sync with a huge sentSeq, a forged final, forged credit and malformed messages are dropped and counted; the migration completes', async () => {
  const vmId = 'forged-control';
  const { workflowId, migrationId } = await startBusyMigration(vmId, 31);
  const subjects = migrationSubjects('h1', 'h2', migrationId);
  const before = await incomingStatus(vmId, migrationId);
  const toDestination = [...forgedSyncMessages(), ...forgedFinalMessages(), ...malformedControlMessages()];
  for (const data of toDestination) forger.publish(subjects.control, data);
  forger.publish(subjects.pages, garbageBatch());
  // A grant this large, if believed, would let the source think every batch was applied.
  const toSource = forgedCreditMessages();
  for (const data of toSource) forger.publish(subjects.credit, data);
  await forger.flush();

  const rejectedHere = (before.rejectedMessages ?? 0) + toDestination.length + 1;
  const during = await until('the destination to count the forgeries', async () => {
    const status = await incomingStatus(vmId, migrationId);
    return (status.rejectedMessages ?? 0) >= rejectedHere ? status : undefined;
  });
  await until('the source to count the forgeries', async () =>
    (await outgoingRejected(vmId, migrationId)) >= toSource.length ? true : undefined,
  );
  // Nothing was written off on the forger's word, and the destination still receives.
  expect(during.state).toBe('receiving');
  expect(during.appliedSeq).toBeLessThan(0xffffffff);

  const result = await calmAndFinish(vmId, workflowId);
  expect(result.rejectedMessages).toBeGreaterThanOrEqual(toDestination.length + 1 + toSource.length);
  expect(result.gapBatches).toBe(0);
  await expectOneVerifiedCopy(vmId, result);
});

test("a forged {ok:true} answer to the source's final request is dropped and counted; the real answer completes the migration", async () => {
  const vmId = 'forged-reply';
  const { workflowId, migrationId } = await startBusyMigration(vmId, 32);
  const subjects = migrationSubjects('h1', 'h2', migrationId);
  // The forger answers the final request at once. The destination is held for a second when asked
  // to finish, so the forged answers reach the source first even on a loaded machine (without the
  // hold, the authentic answer sometimes won, and the source never read the forgeries).
  const answering = answerControlRequests(forger, subjects.control, ['final']);
  await forger.flush();
  await engineCall(fx.cluster, 'h2', vmId, 'migration.armFault', {
    point: 'destination.final',
    action: 'delay',
    delayMs: 1_000,
  });
  try {
    const result = await calmAndFinish(vmId, workflowId);
    expect(answering.requests).toBeGreaterThanOrEqual(1);
    expect(result.rejectedMessages).toBeGreaterThanOrEqual(1);
    expect(result.switchover?.handoverLane).toBe('network');
    await expectOneVerifiedCopy(vmId, result);
  } finally {
    answering.stop();
  }
});

test('a batch replayed from an earlier migration is dropped and counted; both migrations complete', async () => {
  // The earlier migration: the forger records one of its batches as it passes.
  const earlierVm = 'replay-earlier';
  const earlier = await startBusyMigration(earlierVm, 33);
  const { data: recorded } = await recordOneBatch(forger, migrationSubjects('h1', 'h2', earlier.migrationId).pages);
  await expectOneVerifiedCopy(earlierVm, await calmAndFinish(earlierVm, earlier.workflowId));

  const vmId = 'replay-target';
  const { workflowId, migrationId } = await startBusyMigration(vmId, 34);
  const before = await incomingStatus(vmId, migrationId);
  forger.publish(migrationSubjects('h1', 'h2', migrationId).pages, recorded);
  await forger.flush();
  const during = await until('the destination to drop the replayed batch', async () => {
    const status = await incomingStatus(vmId, migrationId);
    return (status.rejectedMessages ?? 0) > (before.rejectedMessages ?? 0) ? status : undefined;
  });
  expect(during.state).toBe('receiving');

  const result = await calmAndFinish(vmId, workflowId);
  expect(result.rejectedMessages).toBeGreaterThanOrEqual(1);
  await expectOneVerifiedCopy(vmId, result);
});
