/**
 * The source's requests whose answers must be authentic (authenticated-request.ts), and the
 * switchover's handover (handover.ts) between the real source and destination, over an in-memory
 * bus: a forger's answer is dropped and counted, the real one taken; nobody to answer fails at once.
 */
import { authenticatedRequest } from '../../data-plane/authenticated-request';
import { differingPages, startEnginePair, writePages, type EnginePair } from './support/engine-pair';
import { InMemoryBroker, type InMemoryBus } from './support/in-memory-bus';

const text = (data: Uint8Array): string => Buffer.from(data).toString('utf8');

let pair: EnginePair | undefined;
const buses: InMemoryBus[] = [];

afterEach(async () => {
  await pair?.close();
  pair = undefined;
  for (const bus of buses.splice(0)) await bus.close();
});

function connect(broker: InMemoryBroker, inboxPrefix?: string): InMemoryBus {
  const bus = broker.connect(inboxPrefix === undefined ? {} : { inboxPrefix });
  buses.push(bus);
  return bus;
}

test('an authenticated request drops a forged reply that comes first and takes the real one', async () => {
  const broker = new InMemoryBroker();
  const requester = connect(broker, '_INBOX.src');
  // The forger subscribed first, so it answers first.
  const forger = connect(broker);
  forger.subscribe('ferry.control', { callback: (_err, msg) => msg.respond(Buffer.from('forged')) });
  const responder = connect(broker);
  responder.subscribe('ferry.control', { callback: (_err, msg) => msg.respond(Buffer.from('real')) });
  const rejected: string[] = [];
  const inboxes: string[] = [];
  connect(broker).subscribe('_INBOX.src.>', { callback: (_err, msg) => inboxes.push(msg.subject) });

  const answer = await authenticatedRequest(
    requester,
    'ferry.control',
    Buffer.from('ask'),
    5_000,
    (reply) => (text(reply) === 'real' ? 'real' : undefined),
    () => rejected.push('forged'),
  );

  expect(answer).toBe('real');
  expect(rejected).toEqual(['forged']);
  // Replies come to the requester's own inbox prefix, where its permissions allow them.
  expect(inboxes.length).toBeGreaterThan(0);
});

test('an authenticated request that nobody can answer fails at once, not at its timeout', async () => {
  const broker = new InMemoryBroker();
  const requester = connect(broker);
  const startedAt = Date.now();

  const request = authenticatedRequest(
    requester,
    'ferry.control',
    Buffer.from('ask'),
    60_000,
    () => 'any',
    () => undefined,
  );

  await expect(request).rejects.toThrow('no responder on ferry.control');
  expect(Date.now() - startedAt).toBeLessThan(1_000);
});

test('the handover drops a forged final reply, waits for the destination and hands over a guest equal page by page', async () => {
  pair = await startEnginePair({ pageCount: 64, batchPages: 8 }, (_broker, _subjects, memory) =>
    writePages(memory, [0, 1, 2, 3, 10, 20, 30, 40, 50, 60], 1),
  );
  const forger = connect(pair.broker);
  forger.subscribe(pair.subjects.control, {
    callback: (_err, msg) => msg.respond(Buffer.from(JSON.stringify({ ok: true, resumedAt: Date.now() }))),
  });
  await pair.outgoing.sendRound(0);
  writePages(pair.source.memory, [2, 11, 63], 2);

  const switchover = await pair.outgoing.switchover(10_000);

  expect(switchover).toMatchObject({ handoverLane: 'network', finalPages: 3, destination: { ok: true } });
  expect(switchover.rejectedMessages).toBeGreaterThanOrEqual(1);
  expect(pair.source.log).toContain('dropped an answer to the final request: not authentic');
  expect(pair.destination.ctx.run.owner).toBe(true);
  expect(pair.source.ctx.run.owner).toBe(false);
  expect(differingPages(pair.source.memory, pair.destination.memory)).toEqual([]);
  expect(pair.destination.memory.digest()).toBe(switchover.sourceDigest);
});
