/**
 * A forger on the real nats-server: a client holding the test cluster's NATS admin user, which may
 * publish and subscribe anywhere (the worst case of someone on NATS; a leaked host credential is
 * narrower), and the forged messages it sends on a migration's subjects. Shared by the soak's
 * forged-message faults and test/integration/forged-messages.test.ts. Every message here must be
 * dropped and counted (`rejectedMessages`) by the host it reaches.
 */
import { connect, type NatsConnection, type Subscription } from 'nats';
import type { NatsUser } from '../infra/nats-credentials';

/** Where a forger connects: a test nats-server with its admin user. */
export interface ForgerTarget {
  url: string;
  admin?: NatsUser | undefined;
}

/** A sentSeq that, if believed, would write off every batch after the real ones. */
export const HUGE_SEQ = 0xffffffff;

/**
 * Connects a forger to `target` as its admin user. No reconnecting: the forger lives as long as
 * the server it was started against. Throws when the server has no admin user (no credentials).
 */
export async function connectForger(target: ForgerTarget): Promise<NatsConnection> {
  const { admin } = target;
  if (admin === undefined) throw new Error('the test nats-server has no admin user (start it with hosts)');
  return connect({ servers: target.url, name: 'forger', reconnect: false, user: admin.user, pass: admin.password });
}

/** `value` as JSON bytes. */
export const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

/** An envelope shaped like a sealed message, with a MAC nobody computed. */
export const badlySealed = (kind: string, body: unknown): Buffer =>
  json({ kind, body: JSON.stringify(body), mac: Buffer.alloc(16).toString('base64') });

/** Forged `sync` requests with a huge sentSeq, plain and badly sealed (control subject). */
export function forgedSyncMessages(): Buffer[] {
  const hugeSync = { type: 'sync', sentSeq: HUGE_SEQ };
  return [json(hugeSync), badlySealed('sync', hugeSync)];
}

/** Forged `final` requests, plain and badly sealed (control subject). */
export function forgedFinalMessages(now = Date.now()): Buffer[] {
  const forgedFinal = {
    type: 'final',
    finalSeq: 1,
    digest: '0'.repeat(64),
    contentDigest: '0'.repeat(64),
    stunAt: now,
    workload: { type: 'idle' },
    seed: 1,
  };
  return [json(forgedFinal), badlySealed('final', forgedFinal)];
}

/** Truncated JSON and bytes that are not UTF-8 (control subject). */
export function malformedControlMessages(): Buffer[] {
  return [Buffer.from('{"type":"final",'), Buffer.from([0xff, 0xfe, 0x00])];
}

/** Bytes that start like a batch and are none (pages subject). */
export function garbageBatch(): Buffer {
  return Buffer.from('FRYB but not a batch at all');
}

/** Forged credit grants that would let the source think every batch was applied (credit subject). */
export function forgedCreditMessages(): Buffer[] {
  const grant = { grantedSeq: HUGE_SEQ, appliedSeq: HUGE_SEQ };
  return [json(grant), badlySealed('credit', grant), Buffer.from('not json')];
}

/** The `{ok:true}` answer a forger gives to a final request before the destination verified anything. */
function forgedFinalReply(now = Date.now()): Record<string, unknown> {
  return {
    ok: true,
    stunAt: now,
    resumedAt: now,
    digest: '0'.repeat(64),
    contentDigest: '0'.repeat(64),
    pagesFromStore: 0,
    gapBatches: 0,
    tornPagesRepaired: 0,
    verifyMs: 0,
  };
}

/** The `kind` of a sealed control request, or undefined if it is not one. */
function requestKind(data: Uint8Array): string | undefined {
  try {
    const kind = (JSON.parse(Buffer.from(data).toString('utf8')) as { kind?: unknown }).kind;
    return typeof kind === 'string' ? kind : undefined;
  } catch {
    return undefined;
  }
}

/** A forger answering a migration's control requests; see answerControlRequests. */
export interface ForgedAnswers {
  /** Requests answered so far. */
  readonly requests: number;
  /** Forged replies sent so far (two per request). */
  readonly replies: number;
  /** Stops answering. */
  stop(): void;
}

/**
 * Answers every request on `controlSubject` whose kind is in `kinds` (default: every request) at
 * once, with a forged `{ok:true}` reply in clear and one badly sealed: the source must drop both
 * and wait for the destination's authentic answer.
 */
export function answerControlRequests(
  forger: NatsConnection,
  controlSubject: string,
  kinds?: readonly string[],
): ForgedAnswers {
  let requests = 0;
  const subscription: Subscription = forger.subscribe(controlSubject, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      const kind = requestKind(msg.data);
      if (kinds !== undefined && (kind === undefined || !kinds.includes(kind))) return;
      requests += 1;
      const reply = forgedFinalReply();
      msg.respond(json(reply));
      msg.respond(badlySealed(`${kind ?? 'final'}-reply`, { finalSeq: 1, reply }));
    },
  });
  return {
    get requests() {
      return requests;
    },
    get replies() {
      return requests * 2;
    },
    stop: () => subscription.unsubscribe(),
  };
}

/** A batch as it passed on NATS. */
export interface RecordedBatch {
  subject: string;
  data: Uint8Array;
}

/**
 * Resolves with the first message on `pagesSubject` (wildcards allowed, e.g. `ferry.h1.h2.*.pages`
 * for whichever migration runs next on that route); the subscription ends after it.
 */
export function recordOneBatch(forger: NatsConnection, pagesSubject: string): Promise<RecordedBatch> {
  return new Promise<RecordedBatch>((resolve, reject) => {
    forger.subscribe(pagesSubject, {
      max: 1,
      callback: (err, msg) => {
        if (err) reject(err);
        else resolve({ subject: msg.subject, data: Uint8Array.from(msg.data) });
      },
    });
  });
}
