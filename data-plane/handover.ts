/**
 * The source's last message of a switchover: the `final` request that asks the destination to
 * finish and resume, and its reply. It goes over NATS while the stream works; else, or if NATS
 * does not answer, through the page file's mailbox, where the source posts it only once the file
 * is complete, since a destination cut off from the stream may lack any page. A destination that
 * does not acknowledge the mailbox request within MAILBOX_ACK_TIMEOUT_MS counts as dead or frozen:
 * the source gives up on it early and rolls back (the ownership epoch fences it if it wakes).
 *
 * A `drop` fault at `source.final-reply` makes the source deaf to every answer of this switchover,
 * as if each were lost: it waits out the whole timeout and fails.
 */
import type { NatsConnection } from 'nats';
import { DEFAULT_MAILBOX_POLL_MS, waitForMessage, type PageStore } from '../store/page-store';
import type { FaultPoints } from './fault-points';
import type { FinalReply, FinalRequest } from './protocol';

/** How long the final request waits for an answer over NATS before using the store's mailbox (ms). */
export const NETWORK_FINAL_TIMEOUT_MS = 5_000;
/**
 * How long a request posted in the mailbox may go unacknowledged before the source takes the
 * destination for dead or frozen and rolls back (ms). A live destination looks every 100 ms.
 */
export const MAILBOX_ACK_TIMEOUT_MS = 2_000;

/** What the handover uses of the source side. */
export interface HandoverContext {
  nc: NatsConnection;
  /** Where the destination takes control requests (MigrationSubjects.control). */
  controlSubject: string;
  store: PageStore;
  migrationId: string;
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
 * completed once the mailbox is needed.
 */
export async function handOver(
  ctx: HandoverContext,
  request: FinalRequest,
  timeoutMs: number,
): Promise<HandoverOutcome> {
  const deadline = Date.now() + timeoutMs;
  let deaf = false;
  if (!ctx.fileOnly) {
    try {
      const reply = await requestFinal(ctx, request, Math.min(NETWORK_FINAL_TIMEOUT_MS, timeoutMs));
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
  if (!(await acknowledged(ctx, ackTimeoutMs)))
    throw new Error(
      `the destination did not pick up the final request from the page file's mailbox within ${ackTimeoutMs} ms`,
    );
  let reply = await waitForMessage<FinalReply>(
    ctx.store,
    ctx.migrationId,
    'final-reply',
    Math.max(0, deadline - Date.now()),
  );
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
async function acknowledged(ctx: HandoverContext, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [ack, reply] = await Promise.all([
      ctx.store.readMessage(ctx.migrationId, 'final-ack'),
      ctx.store.readMessage(ctx.migrationId, 'final-reply'),
    ]);
    if (ack !== undefined || reply !== undefined) return true;
    if (Date.now() >= deadline) return false;
    await sleep(DEFAULT_MAILBOX_POLL_MS);
  }
}

async function requestFinal(ctx: HandoverContext, request: FinalRequest, timeoutMs: number): Promise<FinalReply> {
  const msg = await ctx.nc.request(ctx.controlSubject, Buffer.from(JSON.stringify(request)), { timeout: timeoutMs });
  return JSON.parse(Buffer.from(msg.data).toString('utf8')) as FinalReply;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
