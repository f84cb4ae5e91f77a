/**
 * The engine's method table (data-plane/engine-methods.ts): every method's params are checked
 * before its handler runs, so a handler only ever sees params of its own shape.
 */
import {
  ENGINE_PARAMS,
  servedEngineHandlers,
  type EngineHandlers,
  type EngineMethod,
} from '../../data-plane/engine-methods';

/** Handlers that record what they were given and answer nothing useful (only the checks are tested). */
function recordingHandlers(seen: { method: string; params: unknown }[]): EngineHandlers {
  const handlers = {} as Record<EngineMethod, (params: unknown) => Promise<unknown>>;
  for (const method of Object.keys(ENGINE_PARAMS) as EngineMethod[])
    handlers[method] = async (params) => {
      seen.push({ method, params });
      return {};
    };
  return handlers as unknown as EngineHandlers;
}

const key = Buffer.alloc(32, 7).toString('base64');
const start = {
  migrationId: 'm1',
  nats: { url: 'nats://127.0.0.1:4222' },
  store: '/tmp/store',
  hostId: 'h1',
  baseEpoch: 0,
  key,
};

describe('the engine method table', () => {
  const seen: { method: string; params: unknown }[] = [];
  const served = servedEngineHandlers(recordingHandlers(seen));

  beforeEach(() => {
    seen.length = 0;
  });

  it('serves exactly the methods of the table', () => {
    expect(Object.keys(served).sort()).toEqual(Object.keys(ENGINE_PARAMS).sort());
  });

  it('passes well-formed params through to the handler', async () => {
    await served['migration.startOutgoing']({ ...start, destinationHost: 'h2', batchPages: 256, encrypt: true });
    await served['migration.sendRound']({
      migrationId: 'm1',
      round: 3,
      throttle: { policy: 'sdps', percent: 37.5, adjustWithinRound: true },
    });
    await served['migration.describe'](undefined);
    await served['migration.activeIncoming'](null);
    // A migration id is the workflow id and the run id joined: longer than a VM or host id may be.
    await served['migration.incomingStatus']({ migrationId: `migrate-${'v'.repeat(40)}-${'0'.repeat(36)}` });

    expect(seen.map((s) => s.method)).toEqual([
      'migration.startOutgoing',
      'migration.sendRound',
      'migration.describe',
      'migration.activeIncoming',
      'migration.incomingStatus',
    ]);
    expect(seen[1]?.params).toEqual({
      migrationId: 'm1',
      round: 3,
      throttle: { policy: 'sdps', percent: 37.5, adjustWithinRound: true },
    });
  });

  it.each<[EngineMethod, unknown, RegExp]>([
    ['migration.sendRound', { migrationId: 'm1', round: 1.5 }, /round must be an integer of 0 or more, got 1.5/],
    [
      'migration.sendRound',
      { migrationId: 'm1', round: 1, storeFrist: true },
      /storeFrist is not an option; did you mean storeFirst\?/,
    ],
    [
      'migration.sendRound',
      { migrationId: 'm1', round: 1, throttle: { policy: 'fast', percent: 120, adjustWithinRound: true } },
      /throttle.policy must be one of sdps.*throttle.percent must be a number from 0 to 99/,
    ],
    ['migration.setThrottle', { migrationId: 'm1', percent: 100 }, /percent must be a number from 0 to 99/],
    ['migration.claimOutgoing', { migrationId: 'a/../b' }, /migrationId must be 1-255 letters/],
    ['migration.claimOutgoing', { migrationId: 'm'.repeat(256) }, /migrationId must be 1-255 letters/],
    [
      'migration.startOutgoing',
      { ...start, destinationHost: 'h2', batchPages: 0 },
      /batchPages must be a positive integer/,
    ],
    [
      'migration.startOutgoing',
      { ...start, destinationHost: 'h2', batchPages: 8, key: 'c2hvcnQ=' },
      /key must be a base64 key of 32 bytes/,
    ],
    [
      'migration.startIncoming',
      { ...start, sourceHost: 'h1', creditWindow: 8, nats: { url: 'x', user: 'u' } },
      /nats.user is not an option/,
    ],
    ['migration.renewLease', { migrationId: 'm1', role: 'both' }, /role must be "outgoing" or "incoming"/],
    ['migration.describe', { verbose: true }, /verbose is not an option/],
    ['migration.abortIncoming', 'm1', /migration.abortIncoming params must be an object, got "m1"/],
  ])('refuses %s with %j, and its handler never runs', async (method, params, message) => {
    await expect(served[method](params)).rejects.toMatchObject({
      name: 'InvalidInputError',
      message: expect.stringMatching(message),
    });
    expect(seen).toEqual([]);
  });
});
