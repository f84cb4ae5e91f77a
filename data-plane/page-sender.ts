/**
 * The sending half of the page stream, inside the source VMM process: it batches pages straight out
 * of guest memory, publishes each batch on NATS and hands the same buffer to the page file, so a
 * page is copied once on its way out. The receiver's credit bounds how far the sender may run ahead
 * (core NATS drops messages for a subscriber that falls behind), and a stall in the credit is met
 * with a `sync` request that makes the receiver write off what it never got. Grants and sync
 * replies count only if authentic (control-messages.ts); whatever else arrives is dropped and
 * counted in `rejectedMessages`.
 */
import type { BusSubscription, MessageBus } from './message-bus';
import type { GuestPages } from '../vmm/guest-port';
import type { PageFile } from '../store/page-store';
import { BATCH_FLAG_FINAL, BATCH_FLAG_ROUND_END, BatchBuilder } from './batch-format';
import type { CreditGrant, MigrationSubjects } from './subjects';
import { TransportStalledError } from './errors';
import type { MessageAuth } from './message-auth';
import type { PageHashes } from './page-hashes';
import type { PageCipher } from './page-cipher';
import { decodeCredit, decodeSyncReply, encodeSync } from './control-messages';
import { authenticatedRequest } from './authenticated-request';

/** How long the sender waits on credit before it asks the receiver to resynchronise (ms). */
export const DEFAULT_STALL_MS = 1_000;
/**
 * Consecutive `sync` requests left unanswered (each after a stall of DEFAULT_STALL_MS) after which
 * the sender takes the network lane for dead and carries on through the page file alone.
 */
export const DEFAULT_FAILED_SYNCS_BEFORE_FILE_ONLY = 2;
/** How long the sender waits on credit in total before it gives up (ms). */
export const DEFAULT_CREDIT_TIMEOUT_MS = 30_000;
/**
 * Most bytes handed to the page file but not yet written (to the page cache) before the sender
 * waits. It bounds memory only: the sender never waits for fdatasync, so the network lane is not
 * held to the store's pace; durability is settled at round ends and at switchover.
 */
export const DEFAULT_MAX_UNWRITTEN_BYTES = 512 * 1024 * 1024;
/** How often a round on the page file alone asks whether the network lane works again (ms). */
export const FILE_ONLY_PROBE_INTERVAL_MS = 2_000;
/**
 * While the page file alone carries the pages, the sender waits whenever the store has this many
 * bytes not yet written: the store sets the pace, and the destination, reading the file as it grows,
 * is never far behind.
 */
export const FILE_ONLY_MAX_LAG_BYTES = 64 * 1024 * 1024;
/**
 * The sender starts an fdatasync of the page file in the background whenever this many bytes were
 * written since the last one, so the file trails the stream by little at any moment and the few
 * fsyncs of the switchover do not queue behind a large writeback.
 */
export const DEFAULT_BACKGROUND_SYNC_BYTES = 64 * 1024 * 1024;

/** What one call to `sendPages` moved. */
export interface SendStats {
  pagesSent: number;
  zeroPages: number;
  bytesSent: number;
  batches: number;
}

/** Options of the sender; see the DEFAULT_* constants. */
export interface PageSenderOptions {
  batchPages: number;
  stallMs?: number;
  creditTimeoutMs?: number;
  maxUnwrittenBytes?: number;
}

const ZERO_CHECK_HEADER = 12;

/** Streams pages of one migration; one instance per migration, used by one round at a time. */
export class PageSender {
  private readonly builder: BatchBuilder;
  private readonly creditSub: BusSubscription;
  private grant: CreditGrant = { grantedSeq: 0, appliedSeq: 0 };
  private creditWaiter: (() => void) | undefined;
  private bytesSinceSync = 0;
  private closed = false;
  private failedSyncs = 0;
  private fileOnlySince: number | undefined;
  private reconnectedAt = 0;
  private backgroundSync: Promise<void> | undefined;
  private probedAt = 0;
  private probeInFlight = false;
  /**
   * The destination depends on the store (batches were written off, the stream was lost, or it
   * replaced a crashed destination): the store's writer goes full speed even while the stream
   * works, and the switchover waits for it to catch up. Once set, it stays.
   */
  storeFirst = false;
  /** Bytes handed to the page file in total, and the part known to be durable. */
  storeBytesQueued = 0;
  storeBytesSynced = 0;
  /** Sequence number of the last batch published. */
  lastSeq = 0;
  /** Credit grants and sync replies dropped: not authentic, malformed, or answering another request. */
  rejectedMessages = 0;
  readonly migrationId: string;

  /**
   * `hashes` records the content hash of every page copy sent (the source's content digest). With
   * `cipher`, the batches published on NATS carry their pages encrypted (page-cipher.ts); the page
   * file is handed them in clear.
   */
  constructor(
    private readonly nc: MessageBus,
    private readonly auth: MessageAuth,
    /** The migration's subjects (subjects.ts). */
    readonly subjects: MigrationSubjects,
    private readonly memory: GuestPages,
    private readonly pageFile: PageFile,
    private readonly options: PageSenderOptions,
    hashes: PageHashes,
    cipher?: PageCipher,
  ) {
    this.migrationId = auth.migrationId;
    this.builder = new BatchBuilder(auth, options.batchPages, hashes, cipher);
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'reconnect') this.reconnectedAt = Date.now();
      }
    })().catch(() => undefined);
    this.creditSub = nc.subscribe(this.subjects.credit, {
      callback: (err, msg) => {
        if (err) return;
        const grant = decodeCredit(this.auth, msg.data);
        if (grant) this.onGrant(grant);
        else this.rejectedMessages += 1;
      },
    });
  }

  private onGrant(grant: CreditGrant): void {
    if (grant.grantedSeq > this.grant.grantedSeq) this.grant.grantedSeq = grant.grantedSeq;
    if (grant.appliedSeq > this.grant.appliedSeq) this.grant.appliedSeq = grant.appliedSeq;
    const waiter = this.creditWaiter;
    this.creditWaiter = undefined;
    waiter?.();
  }

  /** Highest sequence the receiver has applied or written off. */
  get appliedSeq(): number {
    return this.grant.appliedSeq;
  }

  /** Waits until `ready()` holds, asking the receiver to resynchronise when credit stalls. */
  private async waitFor(ready: () => boolean, what: string): Promise<void> {
    const stallMs = this.options.stallMs ?? DEFAULT_STALL_MS;
    const deadline = Date.now() + (this.options.creditTimeoutMs ?? DEFAULT_CREDIT_TIMEOUT_MS);
    // A stall is time without progress, not without messages: a receiver that restarted repeats a
    // grant far behind what was sent, and only a `sync` tells it what to write off.
    let progressAt = Date.now();
    let progress = this.grant.grantedSeq + this.grant.appliedSeq;
    while (!ready() && !this.fileOnly) {
      if (this.closed)
        throw new Error(`page stream of migration ${this.migrationId} was closed while waiting for ${what}`);
      if (Date.now() > deadline)
        throw new TransportStalledError(this.migrationId, what, this.lastSeq, this.grant.appliedSeq);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, progressAt + stallMs - Date.now()));
        this.creditWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (this.grant.grantedSeq + this.grant.appliedSeq !== progress) {
        progress = this.grant.grantedSeq + this.grant.appliedSeq;
        progressAt = Date.now();
      } else if (!ready() && Date.now() - progressAt >= stallMs) {
        await this.requestSync();
        progressAt = Date.now();
      }
    }
  }

  /** Tells the receiver what was sent; it writes off missing batches and re-grants credit. */
  private async requestSync(): Promise<void> {
    const sentSeq = this.lastSeq;
    try {
      const grant = await authenticatedRequest(
        this.nc,
        this.subjects.control,
        encodeSync(this.auth, sentSeq),
        this.options.stallMs ?? DEFAULT_STALL_MS,
        (data) => decodeSyncReply(this.auth, data, sentSeq),
        () => (this.rejectedMessages += 1),
      );
      this.failedSyncs = 0;
      // An answer means the network lane works (again): the stream resumes where it is, and the
      // receiver has written off what it missed meanwhile, which it takes from the page file: from
      // now on the destination depends on the store.
      if (this.grant.appliedSeq < sentSeq) this.storeFirst = true;
      this.fileOnlySince = undefined;
      this.pageStorePace();
      this.onGrant(grant);
    } catch {
      // No answer: the server or the receiver is gone. After a few, the page file carries on alone.
      this.failedSyncs += 1;
      if (this.failedSyncs >= DEFAULT_FAILED_SYNCS_BEFORE_FILE_ONLY && this.fileOnlySince === undefined) {
        this.fileOnlySince = Date.now();
        this.probedAt = this.fileOnlySince;
        this.storeFirst = true;
        this.pageStorePace();
      }
    }
  }

  /** True once the network lane was given up: pages then go to the page file only. */
  get fileOnly(): boolean {
    return this.fileOnlySince !== undefined;
  }

  /** Waits until credit allows one more batch (the receiver has room for it). */
  private async waitForCredit(): Promise<void> {
    const seq = this.lastSeq + 1;
    await this.waitFor(() => this.grant.grantedSeq >= seq, `credit for batch ${seq}`);
  }

  /** Waits until the receiver has applied (or written off) every batch sent so far. */
  async waitForDrain(): Promise<void> {
    if (this.fileOnly) return;
    // A flush waits for the server's answer, which never comes while it is gone; the stall
    // handling in waitFor decides then.
    await Promise.race([
      this.nc.flush().catch(() => undefined),
      new Promise((r) => setTimeout(r, this.options.stallMs ?? DEFAULT_STALL_MS)),
    ]);
    await this.waitFor(() => this.grant.appliedSeq >= this.lastSeq, `acknowledgement of batch ${this.lastSeq}`);
  }

  /**
   * Sends `indexes` (ascending page numbers) in batches tagged with `round`. Round 0 skips zero
   * pages entirely; later rounds send a page that became zero as a zero entry. Every batch is also
   * queued to the page file. Resolves when the last batch is published (not yet acknowledged).
   */
  async sendPages(
    indexes: Uint32Array,
    round: number,
    flags: number,
    onBatch?: (stats: SendStats) => void,
  ): Promise<SendStats> {
    // A round on the page file alone asks whether the network lane works again, at its start and
    // now and then (a long round on a slow store need not end on the store alone). Not the final
    // round, whose every millisecond is downtime.
    const final = (flags & BATCH_FLAG_FINAL) !== 0;
    if (!final && this.fileOnly) await this.probeNetwork();
    if (!final) this.pageStorePace();
    const stats: SendStats = { pagesSent: 0, zeroPages: 0, bytesSent: 0, batches: 0 };
    const maxUnwritten = this.options.maxUnwrittenBytes ?? DEFAULT_MAX_UNWRITTEN_BYTES;
    const entries: { index: number; version: number }[] = [];
    this.builder.begin();
    const flush = async (last: boolean): Promise<void> => {
      if (this.builder.size === 0) return;
      if (!final && this.fileOnly && Date.now() - this.probedAt >= FILE_ONLY_PROBE_INTERVAL_MS)
        await this.probeNetwork();
      if (!this.fileOnly) await this.waitForCredit();
      this.lastSeq += 1;
      const { frame, pageData } = this.builder.finish(round, this.lastSeq, last ? flags | BATCH_FLAG_ROUND_END : flags);
      if (!this.fileOnly) this.nc.publish(this.subjects.pages, frame);
      this.pageFile.writePages(entries.slice(), pageData);
      this.noteStoreWrite(pageData.length);
      stats.batches += 1;
      stats.bytesSent += frame.length;
      entries.length = 0;
      this.builder.begin();
      onBatch?.(stats);
      // Memory held for the store is bounded always; while the store is the only lane, it sets the pace.
      if (this.pageFile.bufferedBytes > maxUnwritten) await this.pageFile.waitForWrites(maxUnwritten / 2);
      if (this.fileOnly && this.pageFile.pendingBytes > FILE_ONLY_MAX_LAG_BYTES)
        await this.pageFile.waitForWrites(FILE_ONLY_MAX_LAG_BYTES / 2);
    };
    for (let i = 0; i < indexes.length; i += 1) {
      const index = indexes[i] as number;
      const page = this.memory.page(index);
      if (
        this.memory.meta[index * 2] === 0 &&
        page.readUInt32LE(ZERO_CHECK_HEADER) === 0 &&
        this.memory.isZeroPage(index)
      ) {
        if (round > 0) {
          this.builder.addPage(index, null);
          stats.zeroPages += 1;
        }
      } else {
        // The version is read from the copy, so it always matches the content that was sent; a page
        // torn by a concurrent write is redirtied by that write and sent again.
        const version = this.memory.selfChecking ? undefined : (this.memory.meta[index * 2] as number);
        entries.push({ index, version: this.builder.addPage(index, page, version) });
        stats.pagesSent += 1;
      }
      if (this.builder.size >= this.options.batchPages) await flush(i === indexes.length - 1);
    }
    await flush(true);
    return stats;
  }

  /**
   * Asks whether the network lane works again: waiting for the answer if the client has reconnected
   * to a server since the lane was given up (it most likely does), else in the background (a
   * receiver may be back, e.g. a destination that replaced a crashed one); the lane switches back
   * when the answer comes.
   */
  private async probeNetwork(): Promise<void> {
    this.probedAt = Date.now();
    if (this.reconnectedAt > (this.fileOnlySince ?? 0)) {
      await this.requestSync();
    } else if (!this.probeInFlight) {
      this.probeInFlight = true;
      void this.requestSync().finally(() => (this.probeInFlight = false));
    }
  }

  /**
   * A store that trails the stream yields to it while the stream works: by the invariants it need
   * hold nothing in particular during pre-copy (the manifests say what it holds), and on two cores
   * its uploads would take their CPU from the stream. On the store alone, or when the destination
   * depends on it, it goes full speed.
   */
  private pageStorePace(): void {
    this.pageFile.setPace?.(this.fileOnly || this.storeFirst ? 'full' : 'yield');
  }

  /** Counts a write to the page file and starts a background fdatasync when one is due. */
  private noteStoreWrite(bytes: number): void {
    this.storeBytesQueued += bytes;
    this.bytesSinceSync += bytes;
    if (this.backgroundSync || this.bytesSinceSync < DEFAULT_BACKGROUND_SYNC_BYTES) return;
    this.bytesSinceSync = 0;
    const covered = this.storeBytesQueued;
    this.backgroundSync = this.pageFile.sync().then(
      () => {
        this.storeBytesSynced = Math.max(this.storeBytesSynced, covered);
        this.backgroundSync = undefined;
      },
      () => {
        // The error is kept by the page file and reported by the next sync the migration awaits.
        this.backgroundSync = undefined;
      },
    );
  }

  /** Stops listening for credit; a round still waiting for credit fails at once. */
  close(): void {
    this.closed = true;
    const waiter = this.creditWaiter;
    this.creditWaiter = undefined;
    waiter?.();
    this.creditSub.unsubscribe();
  }
}
