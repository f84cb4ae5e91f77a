/**
 * A NATS request whose answer must be authentic: every reply is checked, the first that passes
 * is the answer, and the others (a forger's, malformed ones, answers to another request) are
 * dropped and counted. A plain `request` takes the first reply whatever it holds, so a forger
 * that answers first would win.
 */
import type { NatsConnection } from 'nats';
import { RequestStrategy } from 'nats';

/**
 * Publishes `data` on `subject` and resolves with the first reply that `accept` turns into a
 * value; calls `onRejected` for every reply it refuses. Throws if none passes within `timeoutMs`,
 * or at once if NATS reports no responder.
 */
export async function authenticatedRequest<T>(
  nc: NatsConnection,
  subject: string,
  data: Uint8Array,
  timeoutMs: number,
  accept: (reply: Uint8Array) => T | undefined,
  onRejected: () => void,
): Promise<T> {
  const replies = await nc.requestMany(subject, data, {
    strategy: RequestStrategy.Timer,
    maxWait: timeoutMs,
    noMux: true,
  });
  for await (const reply of replies) {
    const value = accept(reply.data);
    if (value !== undefined) return value;
    onRejected();
  }
  throw new Error(`no authentic answer on ${subject} within ${timeoutMs} ms`);
}
