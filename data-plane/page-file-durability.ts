/**
 * The source makes its page file durable in the background, one step at a time and in order, so
 * that the stream never waits for the disk: the page file trails the network by at most a bounded
 * lag. After a round (and, while the stream is dead, now and then inside one) its pages are
 * fdatasync'ed and then the round's manifest is written; after the stun the final pages are
 * fdatasync'ed, checked, the file is marked complete and the final request posted in its mailbox.
 *
 * A failed step is logged and kept as `failure` (the first one); once a step has failed, no further
 * round manifest is written.
 */
import type { PageFile, PageStore } from '../store/page-store';
import type { PageSender } from './page-sender';
import type { SealedMessage } from './message-auth';

/** The background writes of one migration's page file. */
export class PageFileDurability {
  private chain: Promise<void> = Promise.resolve();
  private firstFailure: unknown;

  /** `sender` queues the pages into the file; `log` appends a line to the VMM's log. */
  constructor(
    private readonly pageFile: PageFile,
    private readonly sender: PageSender,
    private readonly store: PageStore,
    private readonly migrationId: string,
    private readonly log: (msg: string) => void,
  ) {}

  /** Why a step failed; undefined while none has. */
  get failure(): unknown {
    return this.firstFailure;
  }

  /** Resolves once every step queued so far has run (a failed step resolves it too). */
  settled(): Promise<void> {
    return this.chain;
  }

  /** Syncs the page file and writes the manifest of round `round`, after the steps queued before. */
  queueRoundManifest(round: number): void {
    const queuedAtRoundEnd = this.sender.storeBytesQueued;
    this.chain = this.chain.then(async () => {
      if (this.firstFailure !== undefined) return;
      try {
        const versions = await this.pageFile.sync();
        const indexes: number[] = [];
        versions.forEach((v, i) => {
          if (v !== 0) indexes.push(i);
        });
        await this.pageFile.writeManifest({
          round,
          final: false,
          indexes: Uint32Array.from(indexes),
          versions: Uint32Array.from(indexes, (i) => versions[i] as number),
          finalSeq: 0,
          digest: '',
        });
        this.sender.storeBytesSynced = Math.max(this.sender.storeBytesSynced, queuedAtRoundEnd);
      } catch (err) {
        this.firstFailure = err;
        this.log(`page store failed after round ${round}: ${String(err)}`);
      }
    });
  }

  /**
   * Once every page of the final table (`indexes` at `versions`) is written and fdatasync'ed, marks
   * the page file complete and posts `request` (the final request, sealed) in its mailbox. A destination that lacks a page the
   * file does not hold yet waits for the mark. From the posted request on, the destination can
   * finish without the source: if the source dies now, the VM lives on there (or, if the source is
   * alive and rolls back first, the ownership epoch makes the destination's finish fail).
   */
  queueCompletion(versions: Uint32Array, indexes: Uint32Array, request: SealedMessage): void {
    this.chain = this.chain.then(async () => {
      try {
        const synced = await this.pageFile.sync();
        const missing = indexes.filter((index, k) => synced[index] !== versions[k]);
        if (missing.length > 0)
          throw new Error(`page file lacks ${missing.length} pages at their final version (first: ${missing[0]})`);
        await this.pageFile.markComplete();
        await this.store.postMessage(this.migrationId, 'final', request);
      } catch (err) {
        this.firstFailure ??= err;
        this.log(`page file could not be completed: ${String(err)}`);
      }
    });
  }
}
