/**
 * The page stream between the real sender and receiver (PageSender inside OutgoingMigration,
 * IncomingMigration with its ReceiverCredit) over an in-memory bus, with a directory store in a
 * temporary directory: what arrives, what the credit holds back, what is lost, forged or replayed.
 */
import { randomBytes } from 'node:crypto';
import { BatchBuilder } from '../../data-plane/batch-format';
import { decodeCredit } from '../../data-plane/control-messages';
import { MessageAuth } from '../../data-plane/message-auth';
import { PageHashes } from '../../data-plane/page-hashes';
import { GuestMemory } from '../../vmm/guest-memory';
import { differingPages, startEnginePair, writePages, type EnginePair } from './support/engine-pair';

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

let pair: EnginePair | undefined;

afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

test('a round arrives batch by batch and leaves the destination equal to the source page by page', async () => {
  pair = await startEnginePair({ pageCount: 64, batchPages: 4 }, (_broker, _subjects, memory) =>
    writePages(memory, range(0, 48), 1),
  );

  const round = await pair.outgoing.sendRound(0);

  expect(round).toMatchObject({ pagesSent: 48, lane: 'network' });
  expect(pair.incoming.snapshot()).toMatchObject({ appliedSeq: 12, batches: 12, pagesApplied: 48, gapBatches: 0 });
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([]);
  expect(pair.destination.memory.verifyAll().badPages).toEqual([]);
});

test('the sender stops at the edge of its credit while the receiver grants no more', async () => {
  const key = randomBytes(32);
  const auth = new MessageAuth(key, 'm-credit');
  const options = {
    pageCount: 64,
    batchPages: 4,
    creditWindow: 3,
    migrationId: 'm-credit',
    key: key.toString('base64'),
  };
  pair = await startEnginePair(options, (broker, subjects, memory) => {
    writePages(memory, range(0, 40), 1);
    // Every grant past batch 3 is lost: the receiver's credit stops there.
    broker.fault(subjects.credit, 'drop', { when: (data) => (decodeCredit(auth, data)?.grantedSeq ?? 0) > 3 });
  });
  const observer = pair.broker.connect();
  let published = 0;
  observer.subscribe(pair.subjects.pages, { callback: () => (published += 1) });
  // A sender out of credit asks the receiver to resynchronise: that request is the sign it stalled.
  const stalled = new Promise<number>((resolve) =>
    observer.subscribe(pair!.subjects.control, { callback: () => resolve(published) }),
  );

  const round = pair.outgoing.sendRound(0);

  expect(await stalled).toBe(3);
  expect(pair.incoming.snapshot()).toMatchObject({ appliedSeq: 3, gapBatches: 0 });
  pair.broker.clearFaults();
  expect(await round).toMatchObject({ pagesSent: 40 });
  expect(published).toBe(10);
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([]);
  await observer.close();
});

test('a batch lost on the way counts as a gap, and the switchover fills its pages from the page file', async () => {
  pair = await startEnginePair({ pageCount: 64, batchPages: 4 }, (broker, subjects, memory) => {
    writePages(memory, range(0, 48), 1);
    broker.fault(subjects.pages, 'drop', { skip: 1, count: 1 });
  });

  await pair.outgoing.sendRound(0);

  expect(pair.incoming.snapshot()).toMatchObject({ appliedSeq: 12, batches: 11, gapBatches: 1 });
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([4, 5, 6, 7]);

  const switchover = await pair.outgoing.switchover(10_000);

  expect(switchover.destination).toMatchObject({ ok: true, gapBatches: 1 });
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([]);
});

test('a batch sealed under another key is dropped and counted, and touches no page', async () => {
  pair = await startEnginePair({ pageCount: 16, batchPages: 4 });
  const forger = pair.broker.connect();
  const forged = GuestMemory.create(16);
  writePages(forged, [0, 1], 9);
  const builder = new BatchBuilder(
    new MessageAuth(randomBytes(32), pair.outgoing.input.migrationId),
    4,
    new PageHashes(16),
  );
  builder.begin();
  builder.addPage(0, forged.page(0));
  builder.addPage(1, forged.page(1));
  const dropped = pair.destination.logged(/^dropped a batch/);

  forger.publish(pair.subjects.pages, builder.finish(0, 1, 0).frame);

  await dropped;
  expect(pair.incoming.snapshot()).toMatchObject({ rejectedMessages: 1, batches: 0, appliedSeq: 0 });
  expect(pair.destination.memory.isZeroPage(0) && pair.destination.memory.isZeroPage(1)).toBe(true);
  await forger.close();
});

test('a batch delivered twice is applied once', async () => {
  pair = await startEnginePair({ pageCount: 32, batchPages: 4 }, (broker, subjects, memory) => {
    writePages(memory, range(0, 32), 1);
    broker.fault(subjects.pages, 'duplicate', { skip: 2, count: 1 });
  });

  await pair.outgoing.sendRound(0);

  expect(pair.incoming.snapshot()).toMatchObject({
    appliedSeq: 8,
    batches: 8,
    pagesApplied: 32,
    gapBatches: 0,
    rejectedMessages: 0,
  });
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([]);
});

test('a batch overtaken by a later one is written off, and the switchover takes its pages from the page file', async () => {
  pair = await startEnginePair({ pageCount: 32, batchPages: 4 }, (broker, subjects, memory) => {
    writePages(memory, range(0, 8), 1);
    broker.fault(subjects.pages, 'hold', { count: 2 });
  });
  const round = pair.outgoing.sendRound(0);
  await pair.broker.waitForHeld(2);

  pair.broker.releaseHeld({ reverse: true });
  await round;

  expect(pair.incoming.snapshot()).toMatchObject({ appliedSeq: 2, batches: 1, gapBatches: 1 });
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([0, 1, 2, 3]);
  const switchover = await pair.outgoing.switchover(10_000);
  expect(switchover.destination).toMatchObject({ ok: true });
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([]);
});

test('a sender whose receiver drops off the bus carries on through the page file and hands over through the mailbox', async () => {
  pair = await startEnginePair({ pageCount: 64, batchPages: 4 }, (_broker, _subjects, memory) =>
    writePages(memory, range(0, 48), 1),
  );
  // Its subscriptions gone, the receiver grants nothing and every sync finds no responder.
  pair.destinationBus.cut();

  const round = await pair.outgoing.sendRound(0);

  expect(round).toMatchObject({ pagesSent: 48, lane: 'store' });
  expect(pair.incoming.snapshot()).toMatchObject({ batches: 0 });
  const switchover = await pair.outgoing.switchover(10_000);
  expect(switchover).toMatchObject({ handoverLane: 'store', destination: { ok: true } });
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([]);
});

test('a guest that scans for dirty pages is scanned once per round, at its end; the next round sends what that found, and the switchover adds what the stun finds', async () => {
  const calls = { collect: 0, count: 0 };
  pair = await startEnginePair({ pageCount: 64, batchPages: 4 }, (_broker, _subjects, memory) => {
    writePages(memory, range(0, 48), 1);
    Object.defineProperty(memory, 'scansForDirty', { value: true });
    const collect = memory.collectDirty.bind(memory);
    const count = memory.pendingDirtyCount.bind(memory);
    memory.collectDirty = () => ((calls.collect += 1), collect());
    memory.pendingDirtyCount = () => ((calls.count += 1), count());
  });
  const source = pair.source.memory;

  await pair.outgoing.sendRound(0);
  // Written after round 0's end scan: found by round 1's, sent by the switchover.
  writePages(source, [3, 9], 2);
  const round1 = await pair.outgoing.sendRound(1);
  expect(round1).toMatchObject({ dirtyPagesAtStart: 0, pagesSent: 0, pendingDirtyPages: 2 });
  writePages(source, [9, 20], 3);
  const switchover = await pair.outgoing.switchover(10_000);

  expect(switchover).toMatchObject({ finalPages: 3, destination: { ok: true } });
  // Round 0 collects at its start (every page) and end, round 1 at its end, the stun once more.
  expect(calls).toEqual({ collect: 4, count: 0 });
  expect(differingPages(source, pair.destination.memory)).toEqual([]);
});
