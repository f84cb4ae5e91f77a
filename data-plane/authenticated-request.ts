/**
 * A NATS request whose answer must be authentic: every reply is checked, the first that passes
 * is the answer, and the others (a forger's, malformed ones, answers to another request) are
 * dropped and counted. A plain `request` takes the first reply whatever it holds, so a forger
 * that answers first would win.
 *
 * The request has an inbox of its own and a timer of its own: nothing here waits for the server
 * (nats.js's `requestMany` drains its inbox on timeout, which never ends while the link is stalled).
 */
import { createInbox, ErrorCode } from 'nats';
import type { MessageBus } from './message-bus';

/**
 * Publishes `data` on `subject` and resolves with the first reply that `accept` turns into a
 * value; calls `onRejected` for every reply it refuses. Rejects if none passes within `timeoutMs`,
 * or at once if NATS reports no responder or the publish fails.
 */
export function authenticatedRequest<T>(
  nc: MessageBus,
  subject: string,
  data: Uint8Array,
  timeoutMs: number,
  accept: (reply: Uint8Array) => T | undefined,
  onRejected: () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    // The connection's own inbox prefix, where its permissions allow replies.
    const inbox = createInbox(nc.options?.inboxPrefix);
    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sub.unsubscribe();
      settle();
    };
    const sub = nc.subscribe(inbox, {
      callback: (err, msg) => {
        if (settled) return;
        if (err) return finish(() => reject(err));
        if (msg.data.length === 0 && msg.headers?.status === ErrorCode.NoResponders)
          return finish(() => reject(new Error(`no responder on ${subject}`)));
        const value = accept(msg.data);
        if (value === undefined) onRejected();
        else finish(() => resolve(value));
      },
    });
    const timer = setTimeout(
      () => finish(() => reject(new Error(`no authentic answer on ${subject} within ${timeoutMs} ms`))),
      timeoutMs,
    );
    try {
      nc.publish(subject, data, { reply: inbox });
    } catch (err) {
      finish(() => reject(err));
    }
  });
}
