/**
 * The source's last message of a switchover: the `final` request that asks the destination to
 * finish and resume, and its reply. It goes over NATS while the stream works; else, or if NATS
 * does not answer, through the page file's mailbox, where the source posts it only once the file
 * is complete, since a destination cut off from the stream may lack any page. A destination that
 * does not acknowledge the mailbox request within MAILBOX_ACK_TIMEOUT_MS counts as dead or frozen:
 * the source gives up on it early and rolls back (the ownership epoch fences it if it wakes).
 *
 * A store read that fails is not taken for "no answer yet" and then forgotten: the mailbox is read
 * again until the deadline, and a deadline reached while the store kept failing says so, with the
 * store's error as cause (the source then rolls back, fenced by the ownership epoch if the
 * destination took it meanwhile).
 *
 * Every answer must be authentic under the migration's key and answer this request (its
 * `finalSeq`, see control-messages.ts): a forged `{ok:true}` is dropped and counted, and the source
 * waits on for the real one.
 *
 * A `drop` fault at `source.final-reply` makes the source deaf to every answer of this switchover,
 * as if each were lost: it waits out the whole timeout and fails.
 */
import { DEFAULT_MAILBOX_POLL_MS, type PageStore } from '../store/page-store';
import type { FaultPoints } from './fault-points';
import type { FinalReply, FinalRequest } from '../model/protocol';
import type { MessageAuth, SealedMessage } from './message-auth';
import { openFinalAck, openFinalReply, sealFinalRequest } from './control-messages';
import { authenticatedRequest } from './authenticated-request';
import type { MessageBus } from './message-bus';

/** How long the final request waits for an answer over NATS before using the store's mailbox (ms). */
export const NETWORK_FINAL_TIMEOUT_MS = 5_000;
/**
 * How long a request posted in the mailbox may go unacknowledged before the source takes the
 * destination for dead or frozen and rolls back (ms). A live destination looks every 100 ms.
 */
export const MAILBOX_ACK_TIMEOUT_MS = 2_000;

/** What the handover uses of the source side. */
export interface HandoverContext {
  nc: MessageBus;
  /** Where the destination takes control requests (MigrationSubjects.control). */
  controlSubject: string;
  store: PageStore;
  migrationId: string;
  /** The migration's key: the request is sealed with it, and every answer checked. */
  auth: MessageAuth;
  /** Counts an answer dropped as not authentic. */
  onRejected: () => void;
  /** True once the network lane was given up: the request goes through the mailbox only. */
  fileOnly: boolean;
  faults: FaultPoints;
  log: (msg: string) => void;
  /** Resolves once the source has completed the page file and posted the request, or failed to. */
  storeSettled: () => Promise<void>;
  /** Why completing the page file failed; undefined if it did not. */
  storeFailure: () => unknown;
}

/** How the destination answered and which lane carried its answer. */
export interface HandoverOutcome {
  reply: FinalReply;
  lane: 'network' | 'store';
}

/**
 * Asks the destination to finish, waiting at most `timeoutMs` in all. Throws if the destination
 * does not answer in time on either lane, or the store failure if the page file could not be
 * completed once the mailbox is needed. `sealed`: the request already sealed (the source seals it
 * once for both lanes: a QEMU guest's device state makes it ~430 KB).
 */
export async function handOver(
  ctx: HandoverContext,
  request: FinalRequest,
  timeoutMs: number,
  sealed: SealedMessage = sealFinalRequest(ctx.auth, request),
): Promise<HandoverOutcome> {
  const deadline = Date.now() + timeoutMs;
  let deaf = false;
  if (!ctx.fileOnly) {
    try {
      const reply = await requestFinal(ctx, request.finalSeq, sealed, Math.min(NETWORK_FINAL_TIMEOUT_MS, timeoutMs));
      deaf = await ctx.faults.hit('source.final-reply');
      if (!deaf) return { reply, lane: 'network' };
    } catch (err) {
      ctx.log(`final request over NATS failed (${String(err)}); handing over through the page file`);
    }
  }
  // The request is in the mailbox once the store has settled (see the source's completeStore).
  await ctx.storeSettled();
  const storeFailure = ctx.storeFailure();
  if (storeFailure !== undefined) throw storeFailure;
  const ackTimeoutMs = Math.min(MAILBOX_ACK_TIMEOUT_MS, Math.max(0, deadline - Date.now()));
  if (!(await acknowledged(ctx, request.finalSeq, ackTimeoutMs)))
    throw new Error(
      `the destination did not pick up the final request from the page file's mailbox within ${ackTimeoutMs} ms`,
    );
  let reply = await mailboxReply(ctx, request.finalSeq, deadline);
  if (reply && !deaf) deaf = await ctx.faults.hit('source.final-reply');
  if (deaf) {
    await sleep(Math.max(0, deadline - Date.now()));
    reply = undefined;
  }
  if (!reply)
    throw new Error(
      `the destination did not answer within ${timeoutMs} ms, over NATS or through the page file's mailbox`,
    );
  return { reply, lane: 'store' };
}

/** Whether the destination acknowledged (or already answered) the request in the mailbox within `timeoutMs`. */
async function acknowledged(ctx: HandoverContext, finalSeq: number, timeoutMs: number): Promise<boolean> {
  const seen = await readUntil(ctx, Date.now() + timeoutMs, async () => {
    const [ack, reply] = await Promise.all([
      ctx.store.readMessage<unknown>(ctx.migrationId, 'final-ack'),
      ctx.store.readMessage<unknown>(ctx.migrationId, 'final-reply'),
    ]);
    if (ack !== undefined && openFinalAck(ctx.auth, ack, finalSeq)) return true;
    if (reply !== undefined && openFinalReply(ctx.auth, reply, finalSeq)) return true;
    return undefined;
  });
  return seen === true;
}

/** The destination's authentic reply in the mailbox, waiting for it until `deadline`; undefined if none came. */
async function mailboxReply(ctx: HandoverContext, finalSeq: number, deadline: number): Promise<FinalReply | undefined> {
  let lastRejected: string | undefined;
  return readUntil(ctx, deadline, async () => {
    const message = await ctx.store.readMessage<unknown>(ctx.migrationId, 'final-reply');
    if (message === undefined) return undefined;
    const reply = openFinalReply(ctx.auth, message, finalSeq);
    if (reply) return reply;
    // A forged reply stays in the mailbox until the real one replaces it: counted once.
    const seen = JSON.stringify(message);
    if (seen !== lastRejected) {
      lastRejected = seen;
      ctx.onRejected();
      ctx.log('dropped a final reply in the mailbox: not authentic');
    }
    return undefined;
  });
}

/**
 * Runs `read` every DEFAULT_MAILBOX_POLL_MS until it returns a value or `deadline` passes; a read
 * that fails is made again. Undefined if nothing came; throws if the last reads failed.
 */
async function readUntil<T>(
  ctx: HandoverContext,
  deadline: number,
  read: () => Promise<T | undefined>,
): Promise<T | undefined> {
  for (;;) {
    let failure: unknown;
    try {
      const value = await read();
      if (value !== undefined) return value;
    } catch (err) {
      failure = err;
      ctx.log(`reading the page file's mailbox failed, reading again: ${String(err)}`);
    }
    if (Date.now() >= deadline) {
      if (failure === undefined) return undefined;
      throw new Error(`the store did not answer reads of the page file's mailbox until the deadline`, {
        cause: failure,
      });
    }
    await sleep(DEFAULT_MAILBOX_POLL_MS);
  }
}

async function requestFinal(
  ctx: HandoverContext,
  finalSeq: number,
  sealed: SealedMessage,
  timeoutMs: number,
): Promise<FinalReply> {
  return authenticatedRequest(
    ctx.nc,
    ctx.controlSubject,
    Buffer.from(JSON.stringify(sealed)),
    timeoutMs,
    (data) => openFinalReply(ctx.auth, data, finalSeq),
    () => {
      ctx.onRejected();
      ctx.log('dropped an answer to the final request: not authentic');
    },
  );
}

/** Resolves after `ms`; its timer never holds the process open by itself (the VMM's server does). */
function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
