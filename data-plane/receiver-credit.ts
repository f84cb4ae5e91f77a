/**
 * The receiver's half of the stream's flow control: it grants the sender credit for `creditWindow`
 * batches past the last one applied (or written off), on the credit subject. A grant is published
 * again once half the window is used or a round ends, and every GRANT_REPEAT_MS, since a sender
 * that starts after the receiver learns its credit only from a repeated grant. Each grant is sealed
 * under the migration's key (a replayed old grant is harmless: the sender keeps the highest).
 */
import type { MessageBus } from './message-bus';
import type { CreditGrant } from './subjects';
import type { MessageAuth } from './message-auth';
import { encodeCredit } from './control-messages';

/** How often the receiver repeats its latest grant (ms). */
export const GRANT_REPEAT_MS = 250;

/** Credit of one receiver. */
export class ReceiverCredit {
  private lastGrantedSeq = 0;
  private timer: NodeJS.Timeout | undefined;

  /** `appliedSeq` reads the highest batch sequence number the receiver has applied or written off. */
  constructor(
    private readonly nc: MessageBus,
    private readonly auth: MessageAuth,
    private readonly subject: string,
    private readonly creditWindow: number,
    private readonly appliedSeq: () => number,
  ) {}

  /** Publishes the first grant and starts repeating it. */
  start(): void {
    this.publish();
    this.timer = setInterval(() => this.publish(), GRANT_REPEAT_MS);
  }

  /** Publishes a grant if a round just ended or the sender has used half its window. */
  afterBatch(roundEnd: boolean): void {
    if (roundEnd || this.lastGrantedSeq - this.appliedSeq() <= this.creditWindow / 2) this.publish();
  }

  /** The grant for now, noted as the latest granted (for an answer sent some other way). */
  next(): CreditGrant {
    const grant: CreditGrant = {
      grantedSeq: this.appliedSeq() + this.creditWindow,
      appliedSeq: this.appliedSeq(),
    };
    this.lastGrantedSeq = grant.grantedSeq;
    return grant;
  }

  /** Stops repeating grants; `next` still answers. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private publish(): void {
    this.nc.publish(this.subject, encodeCredit(this.auth, this.next()));
  }
}
