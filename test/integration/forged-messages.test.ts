/**
 * Anyone who can reach NATS can publish on a migration's subjects: forged and replayed messages on
 * the real nats-server, each dropped and counted by the host it reaches, while the migration
 * completes, the destination's memory equals the source's page by page, and one copy runs.
 *
 * The guest dirties memory faster than the stream can converge (throttle off, 1 ms downtime
 * limit), so pre-copy lasts until the test calms it: every forged message lands mid pre-copy.
 */
import { connect, type NatsConnection, type Subscription } from 'nats';
import type { IncomingStatus } from '../../data-plane';
import { migrationSubjects } from '../../data-plane/subjects';
import type { MigrationResult } from '../../workflows/types';
import { expectSameMemory, runningCopies, useCluster, vmmCall } from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster();
let forger: NatsConnection;

beforeAll(async () => {
  // The forger holds the test cluster's admin user, which may publish and subscribe anywhere: the
  // worst case of someone on NATS (a leaked host credential is narrower). No reconnecting: the
  // server stops with the cluster, and the forger with it.
  const { admin } = fx.cluster.nats;
  if (admin === undefined) throw new Error('the test cluster has no NATS admin');
  forger = await connect({
    servers: fx.cluster.nats.url,
    name: 'forger',
    reconnect: false,
    user: admin.user,
    pass: admin.password,
  });
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
  return vmmCall<IncomingStatus>(fx.cluster, 'h2', vmId, 'migration.incomingStatus', { migrationId });
}

function outgoingRejected(vmId: string, migrationId: string): Promise<number> {
  return vmmCall<{ rejectedMessages: number }>(fx.cluster, 'h1', vmId, 'migration.outgoingProgress', {
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
    const { migrationIds } = await vmmCall<{ migrationIds: string[] }>(
      fx.cluster,
      'h2',
      vmId,
      'migration.activeIncoming',
    );
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

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
/** An envelope shaped like a sealed message, with a MAC nobody computed. */
const badlySealed = (kind: string, body: unknown): Buffer =>
  json({ kind, body: JSON.stringify(body), mac: Buffer.alloc(16).toString('base64') });

test('a forged sync with a huge sentSeq, a forged final, forged credit and malformed messages are dropped and counted; the migration completes', async () => {
  const vmId = 'forged-control';
  const { workflowId, migrationId } = await startBusyMigration(vmId, 31);
  const subjects = migrationSubjects('h1', 'h2', migrationId);
  const before = await incomingStatus(vmId, migrationId);
  const hugeSync = { type: 'sync', sentSeq: 0xffffffff };
  const forgedFinal = {
    type: 'final',
    finalSeq: 1,
    digest: '0'.repeat(64),
    contentDigest: '0'.repeat(64),
    stunAt: Date.now(),
    workload: { type: 'idle' },
    seed: 1,
  };
  const toDestination = [
    json(hugeSync),
    badlySealed('sync', hugeSync),
    json(forgedFinal),
    badlySealed('final', forgedFinal),
    Buffer.from('{"type":"final",'),
    Buffer.from([0xff, 0xfe, 0x00]),
  ];
  for (const data of toDestination) forger.publish(subjects.control, data);
  forger.publish(subjects.pages, Buffer.from('FRYB but not a batch at all'));
  // A grant this large, if believed, would let the source think every batch was applied.
  const toSource = [
    json({ grantedSeq: 0xffffffff, appliedSeq: 0xffffffff }),
    badlySealed('credit', { grantedSeq: 0xffffffff, appliedSeq: 0xffffffff }),
    Buffer.from('not json'),
  ];
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
  let finalRequestsSeen = 0;
  // The forger answers the final request at once, before the destination has verified anything.
  const answering: Subscription = forger.subscribe(subjects.control, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      const kind = (() => {
        try {
          return (JSON.parse(Buffer.from(msg.data).toString('utf8')) as { kind?: unknown }).kind;
        } catch {
          return undefined;
        }
      })();
      if (kind !== 'final') return;
      finalRequestsSeen += 1;
      const forgedReply = {
        ok: true,
        stunAt: Date.now(),
        resumedAt: Date.now(),
        digest: '0'.repeat(64),
        contentDigest: '0'.repeat(64),
        pagesFromStore: 0,
        gapBatches: 0,
        tornPagesRepaired: 0,
        verifyMs: 0,
      };
      msg.respond(json(forgedReply));
      msg.respond(badlySealed('final-reply', { finalSeq: 1, reply: forgedReply }));
    },
  });
  await forger.flush();
  try {
    const result = await calmAndFinish(vmId, workflowId);
    expect(finalRequestsSeen).toBeGreaterThanOrEqual(1);
    expect(result.rejectedMessages).toBeGreaterThanOrEqual(1);
    expect(result.switchover?.handoverLane).toBe('network');
    await expectOneVerifiedCopy(vmId, result);
  } finally {
    answering.unsubscribe();
  }
});

test('a batch replayed from an earlier migration is dropped and counted; both migrations complete', async () => {
  // The earlier migration: the forger records one of its batches as it passes.
  const earlierVm = 'replay-earlier';
  const earlier = await startBusyMigration(earlierVm, 33);
  const recorded = await new Promise<Uint8Array>((resolve) => {
    const sub = forger.subscribe(migrationSubjects('h1', 'h2', earlier.migrationId).pages, {
      max: 1,
      callback: (err, msg) => {
        if (!err) resolve(Uint8Array.from(msg.data));
        sub.unsubscribe();
      },
    });
  });
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
