/**
 * The destination's watch on the page file's mailbox: with the network down, the source posts its
 * final request there instead of sending it over NATS. The first authentic request found is
 * acknowledged at once (`final-ack`), answered, and the reply posted back as `final-reply`, all
 * sealed under the migration's key; polling then stops. A request that is not authentic is counted
 * once (it stays in the mailbox until replaced) and polling goes on. A look that fails is logged
 * and made again at the next poll.
 */
import type { PageStore } from '../store/page-store';
import type { FinalReply, FinalRequest } from '../model/protocol';
import type { MessageAuth } from './message-auth';
import { openFinalRequest, sealFinalAck, sealFinalReply } from './control-messages';

/** How often the receiver looks for a final request in the page file's mailbox (ms). */
export const MAILBOX_POLL_MS = 100;

/** Polls one migration's mailbox for the final request until it is found or the watch is stopped. */
export class FinalMailboxWatch {
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private lastRejected: string | undefined;

  /**
   * `answer` turns the request into the reply; `log` appends a line to the VMM's log; `onRejected`
   * counts a request that is not authentic.
   */
  constructor(
    private readonly store: PageStore,
    private readonly auth: MessageAuth,
    private readonly answer: (request: FinalRequest) => Promise<FinalReply>,
    private readonly log: (msg: string) => void,
    private readonly onRejected: () => void,
  ) {}

  /** Starts polling every MAILBOX_POLL_MS. */
  start(): void {
    this.timer = setInterval(() => void this.check(), MAILBOX_POLL_MS);
  }

  /** Stops polling; a look under way still completes. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    const migrationId = this.auth.migrationId;
    try {
      const message = await this.store.readMessage<unknown>(migrationId, 'final');
      if (message === undefined) return;
      const request = openFinalRequest(this.auth, message);
      if (!request) {
        const seen = JSON.stringify(message);
        if (seen !== this.lastRejected) {
          this.lastRejected = seen;
          this.onRejected();
          this.log('dropped the final request in the mailbox: not authentic');
        }
        return;
      }
      this.stop();
      // The acknowledgement tells the source this side is alive and finishing (which may take a
      // while if many pages must come from the file), so it does not give up on it early.
      const acked = this.store
        .postMessage(migrationId, 'final-ack', sealFinalAck(this.auth, request.finalSeq))
        .catch((err: unknown) => this.log(`acknowledging the final request failed: ${String(err)}`));
      const reply = await this.answer(request);
      await acked;
      await this.store.postMessage(migrationId, 'final-reply', sealFinalReply(this.auth, request.finalSeq, reply));
    } catch (err) {
      this.log(`mailbox check failed: ${String(err)}`);
    } finally {
      this.busy = false;
    }
  }
}
