/**
 * How a destination settles a migration whose source may be gone (the workflow asks before it
 * aborts, and before it destroys the destination's copy): if the source committed the handover
 * (its final request is in the page file's mailbox, posted once the file held every final page),
 * the destination finishes from the file as if asked; then any finish under way is awaited.
 *
 * A store error is never read as "no request": the source may have committed and died, leaving
 * this side the only copy. The mailbox is read again until the store answers (store-answer.ts);
 * if it never does within the limit, or the finish could not learn whether its ownership claim
 * landed, settling throws StoreUndecidedError and the caller keeps the destination as it is: the
 * VM's state is unknown, and nothing is destroyed on a guess.
 */
import type { PageStore } from '../store/page-store';
import { untilAnswered, type AnswerOptions } from '../store/store-answer';
import type { FinalReply, FinalRequest } from '../model/protocol';

/** What settling needs of the destination side. */
export interface SettleTarget {
  store: PageStore;
  migrationId: string;
  /** True while no final request has been taken up and the stream is still being received. */
  awaitingFinal(): boolean;
  /** Starts (or joins) the finish for `request`. */
  finish(request: FinalRequest): Promise<FinalReply>;
  /** The finish under way or done, if any. */
  finishing(): Promise<FinalReply> | undefined;
  /**
   * The final request in `message` as read from the mailbox if it is authentic under the
   * migration's key; undefined (and counted by the target) if it is not.
   */
  openRequest(message: unknown): FinalRequest | undefined;
  /** Set when the finish could not learn whether its ownership claim landed (StoreUndecidedError). */
  undecided(): Error | undefined;
  log(msg: string): void;
}

/**
 * Settles `target` (see the module comment). Resolves once nothing is under way; throws
 * StoreUndecidedError if the store did not answer in time, leaving the destination untouched.
 */
export async function settleIncoming(target: SettleTarget, options: AnswerOptions = {}): Promise<void> {
  if (target.finishing() === undefined && target.awaitingFinal()) {
    const message = await untilAnswered(
      `whether the source of migration ${target.migrationId} posted its final request in the mailbox`,
      () => target.store.readMessage<unknown>(target.migrationId, 'final'),
      {
        ...options,
        onError: (err, attempt) => {
          target.log(`settle: reading the mailbox failed (attempt ${attempt}), reading again: ${String(err)}`);
          options.onError?.(err, attempt);
        },
      },
    );
    const authentic = message === undefined ? undefined : target.openRequest(message);
    if (authentic !== undefined) void target.finish(authentic);
  }
  await target.finishing();
  const undecided = target.undecided();
  if (undecided !== undefined) throw undecided;
}
