/**
 * The destination side of a migration, living in the destination VMM process.
 *
 * It applies page batches from NATS into guest memory, notices lost batches by their sequence
 * gaps, grants the sender credit, and answers the source's `final` request, over NATS or through
 * the page file's mailbox (final-mailbox.ts): it fills from the page file every page it lacks or
 * received torn, checks the whole-memory digest against the source's (final-fill.ts), takes
 * ownership (compare-and-swap on the store) and only then resumes the guest.
 *
 * Every batch and control message must be authentic under the migration's key (message-auth.ts):
 * anything else (a forged sync or final, a batch replayed from another migration, malformed JSON)
 * is dropped and counted in `rejectedMessages`, never thrown inside a subscription callback.
 *
 * Idempotency: starting twice returns the running instance. A `final` request repeated after a
 * success gets the same answer; the guest is resumed once.
 */
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import type { VmmContext } from '../vmm/extensions';
import type { PageFileKey, PageStore, PreparedClaim } from '../store/page-store';
import { untilAnswered } from '../store/store-answer';
import { BATCH_FLAG_ROUND_END, decodeBatch, type DecodedBatch } from './batch-format';
import { MessageAuth } from './message-auth';
import { PageHashes, ZERO_PAGE_HASH } from './page-hashes';
import { PageCipher } from './page-cipher';
import { decodeControl, encodeSyncReply, openFinalRequest, sealFinalReply } from './control-messages';
import { migrationSubjects, type MigrationSubjects } from './subjects';
import { resolveEngineDeps, type EngineDeps } from './engine-deps';
import type { BusMessage, BusSubscription, MessageBus } from './message-bus';
import { fillAndVerifyUntilAnswered } from './final-fill';
import { settleIncoming } from './incoming-settle';
import { FinalMailboxWatch } from './final-mailbox';
import { ReceiverCredit } from './receiver-credit';
import { StorePrefetcher } from './store-prefetch';
import type { FinalReply, FinalRequest, IncomingStartInput, IncomingStatus } from '../model/protocol';
import type { FaultPoints } from './fault-points';

/** How long a destination that resumed still answers a repeated final request (ms). */
export const ANSWER_LINGER_MS = 60_000;
/** How long `final` waits for batches still in flight before it takes them from the file (ms). */
export const DEFAULT_FINAL_WAIT_MS = 500;

const ZERO_PAGE = Buffer.alloc(PAGE_SIZE_BYTES);

/** Destination side of one migration. */
export class IncomingMigration {
  private readonly subjects: MigrationSubjects;
  private readonly subs: BusSubscription[] = [];
  /** Pages whose last received copy failed its self-check (torn while the source wrote it). */
  private readonly torn = new Set<number>();
  private readonly status: IncomingStatus;
  private finalReply: Promise<FinalReply> | undefined;
  private seqWaiter: (() => void) | undefined;
  private readonly credit: ReceiverCredit;
  /** With the network down, the source posts its final request in the page file's mailbox. */
  private readonly mailbox: FinalMailboxWatch;
  /** The ownership claim, written and synced ahead so the switchover only links it into place. */
  private readonly preparedClaim: Promise<PreparedClaim>;
  /** Reads the page file while no batch arrives, so the switchover reads little (see store-prefetch.ts). */
  private readonly prefetcher: StorePrefetcher;
  /** Why this side cannot tell whether its ownership claim landed (the store did not answer). */
  private undecided: Error | undefined;
  private readonly auth: MessageAuth;
  /** Opens encrypted batches, whichever the source sends (their MAC says the source chose so). */
  private readonly cipher: PageCipher;
  /** Content hash of every page memory holds, for the switchover's content digest. */
  private readonly hashes: PageHashes;
  /** Batches and control messages dropped as not authentic or malformed. */
  private rejectedMessages = 0;

  private constructor(
    private readonly ctx: VmmContext,
    readonly input: IncomingStartInput,
    private readonly nc: MessageBus,
    private readonly store: PageStore,
    private readonly faults: FaultPoints,
  ) {
    this.subjects = migrationSubjects(input.sourceHost, input.hostId, input.migrationId);
    this.auth = new MessageAuth(Buffer.from(input.key, 'base64'), input.migrationId);
    this.cipher = new PageCipher(Buffer.from(input.key, 'base64'));
    this.hashes = new PageHashes(ctx.memory.pageCount);
    this.credit = new ReceiverCredit(
      nc,
      this.auth,
      this.subjects.credit,
      input.creditWindow,
      () => this.status.appliedSeq,
    );
    this.preparedClaim = this.prepareOwnershipClaim();
    this.preparedClaim.catch(() => undefined);
    this.prefetcher = new StorePrefetcher(this.store, input.migrationId, ctx.memory, this.torn, {
      log: (msg) => ctx.log(msg),
      eager: input.rebuildFromStore === true,
      hashes: this.hashes,
      pageFileKey: this.pageFileKey(),
    });
    this.mailbox = new FinalMailboxWatch(
      this.store,
      this.auth,
      (request) => this.finishOnce(request),
      (msg) => ctx.log(msg),
      () => (this.rejectedMessages += 1),
    );
    this.status = {
      migrationId: input.migrationId,
      state: 'receiving',
      appliedSeq: 0,
      batches: 0,
      bytesReceived: 0,
      pagesApplied: 0,
      gapBatches: 0,
    };
  }

  /**
   * Subscribes to the stream and starts granting credit. `deps` replaces the bus and the store
   * (engine-deps.ts); by default, a NATS connection as `input.nats` says and the store `input.store` names.
   */
  static async start(
    ctx: VmmContext,
    input: IncomingStartInput,
    faults: FaultPoints,
    deps: Partial<EngineDeps> = {},
  ): Promise<IncomingMigration> {
    const { connect, openStore } = resolveEngineDeps(deps);
    const nc = await connect(input.nats, input.hostId, `ferry-destination-${input.migrationId}`, (msg) => ctx.log(msg));
    const incoming = new IncomingMigration(ctx, input, nc, openStore(input.store), faults);
    incoming.listen();
    await nc.flush();
    incoming.credit.start();
    incoming.mailbox.start();
    // With the stream dead or stalled, what the source writes to the page file is read meanwhile.
    incoming.prefetcher.start();
    return incoming;
  }

  private listen(): void {
    this.subs.push(
      this.nc.subscribe(this.subjects.pages, { callback: (err, msg) => (err ? undefined : this.onBatch(msg)) }),
      this.nc.subscribe(this.subjects.control, { callback: (err, msg) => (err ? undefined : this.onControl(msg)) }),
    );
  }

  /** Drops a message that is not authentic or not well formed, and counts it. */
  private reject(what: string, why: string): void {
    this.rejectedMessages += 1;
    this.ctx.log(`dropped ${what}: ${why}`);
  }

  private onBatch(msg: BusMessage): void {
    if (this.status.state !== 'receiving') return;
    let batch: DecodedBatch;
    try {
      batch = decodeBatch(msg.data, this.auth, this.cipher);
    } catch (err) {
      // Treated like a lost batch: its pages come from the file at switchover.
      this.reject('a batch', err instanceof Error ? err.message : String(err));
      return;
    }
    // Only an authentic batch says the stream works: a forger cannot hold the prefetch back.
    this.prefetcher.noteBatch();
    if (batch.seq <= this.status.appliedSeq) return;
    if (batch.entries.some((e) => e.index >= this.ctx.memory.pageCount)) {
      this.ctx.log(`dropped batch ${batch.seq}: it names a page beyond this guest's ${this.ctx.memory.pageCount}`);
      return;
    }
    this.status.gapBatches += batch.seq - this.status.appliedSeq - 1;
    let dataIndex = 0;
    for (const entry of batch.entries) {
      let ok: boolean;
      if (entry.zero) {
        ok = this.ctx.memory.applyPage(entry.index, ZERO_PAGE, 0);
        this.hashes.set(entry.index, ZERO_PAGE_HASH);
      } else {
        ok = this.ctx.memory.applyPage(
          entry.index,
          batch.pageData.subarray(dataIndex * PAGE_SIZE_BYTES, (dataIndex + 1) * PAGE_SIZE_BYTES),
          entry.version,
        );
        // decodeBatch checked the page against this hash.
        this.hashes.set(entry.index, entry.hash);
        dataIndex += 1;
      }
      if (ok) this.torn.delete(entry.index);
      else this.torn.add(entry.index);
    }
    this.status.appliedSeq = batch.seq;
    this.status.batches += 1;
    this.status.bytesReceived += msg.data.length;
    this.status.pagesApplied += batch.entries.length;
    const roundEnd = (batch.flags & BATCH_FLAG_ROUND_END) !== 0;
    this.credit.afterBatch(roundEnd);
    const waiter = this.seqWaiter;
    this.seqWaiter = undefined;
    waiter?.();
  }

  /** Runs `finish` once, whichever lane asked first; later asks get the same reply. */
  private finishOnce(request: FinalRequest): Promise<FinalReply> {
    this.finalReply ??= this.faults
      .hit('destination.final')
      .then(() => this.finish(request))
      .catch((err: unknown) => {
        // Whether the claim landed is unknown: this copy may be the VM's only one, so settling
        // must not let it be destroyed (see incoming-settle.ts).
        if ((err as Error | null)?.name === 'StoreUndecidedError') this.undecided = err as Error;
        const reason = err instanceof Error ? err.message : String(err);
        this.status.state = 'failed';
        this.status.reason = reason;
        return { ok: false, reason } as FinalReply;
      });
    return this.finalReply;
  }

  private onControl(msg: BusMessage): void {
    const request = decodeControl(this.auth, msg.data);
    if (!request) {
      this.reject('a control message', 'not an authentic sync or final request of this migration');
      return;
    }
    if (request.type === 'sync') {
      // The sender sent up to sentSeq and heard nothing: what did not arrive is written off (its
      // pages are taken from the file at switchover) and credit flows again.
      if (request.sentSeq > this.status.appliedSeq) {
        this.status.gapBatches += request.sentSeq - this.status.appliedSeq;
        this.status.appliedSeq = request.sentSeq;
      }
      this.respond(msg, encodeSyncReply(this.auth, request.sentSeq, this.credit.next()));
      return;
    }
    void this.finishOnce(request).then((reply) =>
      this.respond(msg, Buffer.from(JSON.stringify(sealFinalReply(this.auth, request.finalSeq, reply)))),
    );
  }

  /** Answers `msg`; an answer that cannot be sent (the connection closing) is the sender's timeout. */
  private respond(msg: BusMessage, data: Uint8Array): void {
    try {
      msg.respond(data);
    } catch (err) {
      this.ctx.log(`could not answer on ${this.subjects.control}: ${String(err)}`);
    }
  }

  private async waitForSeq(seq: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.status.appliedSeq < seq && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.seqWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Completes the migration on this side: fill, verify, take ownership, resume. */
  private async finish(request: FinalRequest): Promise<FinalReply> {
    await this.waitForSeq(request.finalSeq, DEFAULT_FINAL_WAIT_MS);
    const verifyStarted = performance.now();
    // From here on the page file is the only source: a straggling batch must not overwrite a page
    // already filled from the file.
    this.status.state = 'finishing';
    // The fill below reads only what the prefetch did not; nothing is applied after this resolves.
    await this.prefetcher.stop();
    if (this.status.appliedSeq < request.finalSeq) this.status.gapBatches += request.finalSeq - this.status.appliedSeq;
    const { digest, contentDigest, pagesFromStore, tornPagesRepaired } = await fillAndVerifyUntilAnswered(
      {
        store: this.store,
        migrationId: this.input.migrationId,
        memory: this.ctx.memory,
        torn: this.torn,
        digest: request.digest,
        content: { hashes: this.hashes, auth: this.auth, digest: request.contentDigest },
        pageFileKey: this.pageFileKey(),
      },
      { onError: (err, attempt) => this.ctx.log(`final fill: the store failed (attempt ${attempt}): ${String(err)}`) },
    );
    const verifyMs = performance.now() - verifyStarted;
    // A real guest's devices are loaded before the claim: a destination that cannot load them never runs.
    if (this.ctx.devices) {
      if (request.deviceState === undefined)
        throw new Error('the final request carries no device state, and this guest needs one');
      await this.ctx.devices.load(Buffer.from(request.deviceState, 'base64'));
    }
    // If the claim could not be prepared at start (the store was unreachable then), try again now.
    const prepared = await this.preparedClaim.catch(() =>
      untilAnswered(`whether the ownership claim of ${this.input.migrationId} can be written`, () =>
        this.prepareOwnershipClaim(),
      ),
    );
    const claim = await this.store.commitClaim(prepared);
    if (!claim.won) throw new Error(`ownership epoch ${this.input.baseEpoch + 1} was taken by ${claim.record.hostId}`);
    this.ctx.vcpu.setWorkload(request.workload);
    this.ctx.run.takeOwnership();
    this.ctx.mode = 'run';
    this.status.state = 'resumed';
    const reply: FinalReply = {
      ok: true,
      resumedAt: Date.now(),
      digest,
      contentDigest,
      pagesFromStore,
      pagesPrefetched: this.prefetcher.pagesApplied,
      gapBatches: this.status.gapBatches,
      tornPagesRepaired,
      verifyMs,
      stunAt: request.stunAt,
    };
    this.status.final = reply;
    // The stream is done; the control subject and the mailbox keep answering a while, in case the
    // source's copy of this reply was lost and it asks again (the answer is the same).
    this.credit.stop();
    this.subs[0]?.unsubscribe();
    setTimeout(() => this.stopListening(), ANSWER_LINGER_MS).unref();
    return reply;
  }

  /** Writes and syncs the claim on the epoch after the migration's base epoch, for this host. */
  /** The migration key, for a page file the source seals at rest (it says so in the file's header). */
  private pageFileKey(): PageFileKey {
    return { migrationKey: Buffer.from(this.input.key, 'base64') };
  }

  private prepareOwnershipClaim(): Promise<PreparedClaim> {
    return this.store.prepareClaim({
      vmId: this.ctx.vmId,
      epoch: this.input.baseEpoch + 1,
      hostId: this.input.hostId,
      migrationId: this.input.migrationId,
    });
  }

  private stopListening(): void {
    this.credit.stop();
    this.mailbox.stop();
    for (const sub of this.subs) if (!sub.isClosed()) sub.unsubscribe();
  }

  /**
   * Settles a migration whose source may be gone, without aborting it (incoming-settle.ts): if the
   * source committed the handover, finishes from the file as if asked; then waits for any finish
   * under way. Whether the guest resumes is still decided by the ownership epoch, so a source that
   * rolled back first keeps the VM. Throws StoreUndecidedError if the store did not answer whether
   * it did: then nothing may destroy this side.
   */
  async settle(): Promise<IncomingStatus> {
    await settleIncoming({
      store: this.store,
      migrationId: this.input.migrationId,
      awaitingFinal: () => this.status.state === 'receiving',
      finish: (request) => this.finishOnce(request),
      finishing: () => this.finalReply,
      openRequest: (message) => {
        const request = openFinalRequest(this.auth, message);
        if (!request) this.reject('the final request in the mailbox', 'not authentic');
        return request;
      },
      undecided: () => this.undecided,
      log: (msg) => this.ctx.log(msg),
    });
    return this.snapshot();
  }

  /** Current figures, for heartbeats and the workflow's result. */
  snapshot(): IncomingStatus {
    return { ...this.status, pagesPrefetched: this.prefetcher.pagesApplied, rejectedMessages: this.rejectedMessages };
  }

  /** Stops receiving; the guest stays paused unless it was already resumed. */
  async close(): Promise<void> {
    if (this.status.state === 'receiving') this.status.state = 'aborted';
    if (this.status.state !== 'resumed')
      await this.preparedClaim.then(
        (claim) => this.store.discardClaim(claim),
        () => undefined,
      );
    this.stopListening();
    await this.prefetcher.stop();
    if (this.finalReply) await this.finalReply;
    // A drain waits for the server, which may be gone: bounded, then the connection is closed.
    await Promise.race([this.nc.drain().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000).unref())]);
    await this.nc.close().catch(() => undefined);
  }
}
