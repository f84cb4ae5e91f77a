/**
 * The source side of a migration, living in the source VMM process for the whole migration.
 *
 * Idempotency: each round and the switchover run once; a retried activity that asks for the same
 * round (or the switchover) again gets the same promise, so a host agent restart never sends a
 * round twice or stuns twice. The page file trails the network by at most a bounded lag; each
 * round's manifest is written once its pages are fdatasync'ed, in the background.
 *
 * Switchover (stun → final pages on the stream while the final manifest is made durable → `final`
 * request to the destination → its reply) makes no Temporal round trip and does not wait for the
 * page file to catch up: the destination reads from the file only pages it lacks, and for those it
 * waits until the source has marked the file complete. If the destination does not confirm, the source claims
 * the next ownership epoch for itself and, only if it wins, resumes the guest.
 */
import { connect, type NatsConnection } from 'nats';
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import type { VmmContext } from '../vmm/extensions';
import { PageFile } from '../store/page-file';
import { claimOwnership } from '../store/ownership';
import { postMessage, waitForMessage } from '../store/mailbox';
import { BATCH_FLAG_FINAL } from './batch-format';
import { PageSender } from './page-sender';
import type { FaultPoints } from './fault-points';
import { migrationSubjects } from './subjects';
import { SwitchoverError } from './errors';
import type { FinalReply, FinalRequest, OutgoingStartInput, RoundStats, SwitchoverStats } from './protocol';

/** While the page file alone carries the pages, a manifest is written after every this many bytes. */
export const FILE_ONLY_MANIFEST_BYTES = 64 * 1024 * 1024;
/** How long the final request waits for an answer over NATS before using the store's mailbox (ms). */
export const NETWORK_FINAL_TIMEOUT_MS = 5_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Counts set bits of the dirty bitmap without clearing it. */
function countDirty(dirty: Int32Array): number {
  let count = 0;
  for (let i = 0; i < dirty.length; i += 1) {
    let word = Atomics.load(dirty, i);
    while (word !== 0) {
      word &= word - 1;
      count += 1;
    }
  }
  return count;
}

/** Source side of one migration. */
export class OutgoingMigration {
  private readonly rounds = new Map<number, Promise<RoundStats>>();
  private switchoverPromise: Promise<SwitchoverStats> | undefined;
  private storeChain: Promise<void> = Promise.resolve();
  private storeFailure: unknown;
  private currentRound = -1;
  private currentRoundStats = { pagesSent: 0, bytesSent: 0 };
  state: 'streaming' | 'stunned' | 'handed-over' | 'rolled-back' | 'aborted' = 'streaming';

  private constructor(
    private readonly ctx: VmmContext,
    readonly input: OutgoingStartInput,
    private readonly nc: NatsConnection,
    private readonly pageFile: PageFile,
    private readonly sender: PageSender,
    private readonly faults: FaultPoints,
  ) {}

  /** Connects to NATS and creates (or reopens) the page file. */
  static async start(ctx: VmmContext, input: OutgoingStartInput, faults: FaultPoints): Promise<OutgoingMigration> {
    const pageFile = await PageFile.create(input.storeDir, {
      migrationId: input.migrationId,
      vmId: ctx.vmId,
      pageCount: ctx.memory.pageCount,
    });
    const nc = await connect({
      servers: input.natsUrl,
      name: `ferry-source-${input.migrationId}`,
      maxReconnectAttempts: -1,
    });
    const sender = new PageSender(nc, input.migrationId, ctx.memory, pageFile, { batchPages: input.batchPages });
    return new OutgoingMigration(ctx, input, nc, pageFile, sender, faults);
  }

  /** Sends round `round` (once; a repeated call returns the same result). */
  sendRound(round: number): Promise<RoundStats> {
    let promise = this.rounds.get(round);
    if (!promise) {
      promise = this.runRound(round);
      this.rounds.set(round, promise);
    }
    return promise;
  }

  private async runRound(round: number): Promise<RoundStats> {
    if (this.state !== 'streaming')
      throw new Error(`migration ${this.input.migrationId} is ${this.state}, cannot send round ${round}`);
    const startedAt = performance.now();
    // Clearing the dirty log before reading pages is what makes a concurrently written page show
    // up dirty again for the next round.
    const dirty = this.ctx.memory.collectDirty();
    const indexes = round === 0 ? Uint32Array.from({ length: this.ctx.memory.pageCount }, (_, i) => i) : dirty;
    this.currentRound = round;
    this.currentRoundStats = { pagesSent: 0, bytesSent: 0 };
    let manifestAtBytes = this.sender.storeBytesQueued;
    const sent = await this.sender.sendPages(indexes, round, 0, (s) => {
      this.currentRoundStats = { pagesSent: s.pagesSent, bytesSent: s.bytesSent };
      // With the stream dead, the destination reads the file as it grows: a manifest now and then
      // inside the round tells it what the file holds so far (see store-prefetch.ts).
      if (this.sender.fileOnly && this.sender.storeBytesQueued - manifestAtBytes >= FILE_ONLY_MANIFEST_BYTES) {
        manifestAtBytes = this.sender.storeBytesQueued;
        this.queueManifest(round);
      }
    });
    await this.sender.waitForDrain();
    const durationMs = Math.max(performance.now() - startedAt, 0.001);
    const pendingDirtyPages = countDirty(this.ctx.memory.dirty);
    this.queueManifest(round);
    return {
      round,
      dirtyPagesAtStart: round === 0 ? this.ctx.memory.pageCount : dirty.length,
      pagesSent: sent.pagesSent,
      zeroPages: sent.zeroPages,
      bytesSent: sent.bytesSent,
      durationMs,
      throughputBytesPerSec: (sent.bytesSent * 1000) / durationMs,
      pendingDirtyPages,
      dirtyRateBytesPerSec: (pendingDirtyPages * PAGE_SIZE_BYTES * 1000) / durationMs,
      storeLagBytes: this.sender.storeBytesQueued - this.sender.storeBytesSynced,
      lane: this.sender.fileOnly ? 'store' : 'network',
      vcpu: this.ctx.vcpu.stats(),
    };
  }

  /** Syncs the page file and writes the round's manifest in the background, in round order. */
  private queueManifest(round: number): void {
    const queuedAtRoundEnd = this.sender.storeBytesQueued;
    this.storeChain = this.storeChain.then(async () => {
      if (this.storeFailure !== undefined) return;
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
        this.storeFailure = err;
        this.ctx.log(`page store failed after round ${round}: ${String(err)}`);
      }
    });
  }

  /** Stuns the guest, sends the rest and hands the VM over (once). */
  switchover(resumeTimeoutMs: number): Promise<SwitchoverStats> {
    this.switchoverPromise ??= this.runSwitchover(resumeTimeoutMs);
    return this.switchoverPromise;
  }

  private async runSwitchover(resumeTimeoutMs: number): Promise<SwitchoverStats> {
    const stunAt = Date.now();
    const stunStarted = performance.now();
    await this.ctx.vcpu.pause();
    this.state = 'stunned';
    try {
      await this.faults.hit('source.after-stun');
      const round = this.currentRound + 1;
      const dirty = this.ctx.memory.collectDirty();
      const { indexes, versions } = this.finalPageTable();
      const digest = this.ctx.memory.digest();
      const storeLagBytes =
        this.sender.storeBytesQueued - this.sender.storeBytesSynced + dirty.length * PAGE_SIZE_BYTES;
      // The final manifest (what the guest's memory is at stun) becomes durable while the last
      // pages travel; the destination needs it only if it lacks a page.
      const manifestDurable = this.pageFile.writeManifest({
        round,
        final: true,
        indexes,
        versions,
        finalSeq: 0,
        digest,
      });
      const sent = await this.sender.sendPages(dirty, round, BATCH_FLAG_FINAL);
      if (!this.sender.fileOnly)
        await Promise.race([this.nc.flush().catch(() => undefined), sleep(NETWORK_FINAL_TIMEOUT_MS)]);
      const sentAt = performance.now();
      await manifestDurable;
      const durableAt = performance.now();
      const request: FinalRequest = {
        type: 'final',
        finalSeq: this.sender.lastSeq,
        digest,
        stunAt,
        workload: this.ctx.vcpu.workload(),
        seed: this.ctx.seed,
      };
      this.completeStore(versions, indexes, request);
      if (this.faults.isArmed('source.final-pages-durable')) {
        await this.storeChain;
        await this.faults.hit('source.final-pages-durable');
      }
      const { reply, lane } = await this.handOver(request, resumeTimeoutMs);
      if (!reply.ok) throw new Error(reply.reason);
      this.state = 'handed-over';
      return {
        finalPages: sent.pagesSent + sent.zeroPages,
        finalBytes: sent.bytesSent,
        downtimeMs: performance.now() - stunStarted,
        stunAt,
        finalSendMs: sentAt - stunStarted,
        storeDurableMs: durableAt - sentAt,
        storeLagBytes,
        destination: reply,
        sourceDigest: digest,
        handoverLane: lane,
      };
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      const rolledBack = await this.rollback();
      throw new SwitchoverError(this.input.migrationId, reason, rolledBack, { cause: err });
    }
  }

  /**
   * In the background: once every page of the final table is written and fdatasync'ed, marks the
   * page file complete and posts the final request in its mailbox. A destination that lacks a page
   * the file does not hold yet waits for the mark. From the posted request on, the destination can
   * finish without the source: if the source dies now, the VM lives on there (or, if the source is
   * alive and rolls back first, the ownership epoch makes the destination's finish fail).
   */
  private completeStore(versions: Uint32Array, indexes: Uint32Array, request: FinalRequest): void {
    this.storeChain = this.storeChain.then(async () => {
      try {
        const synced = await this.pageFile.sync();
        const missing = indexes.filter((index, k) => synced[index] !== versions[k]);
        if (missing.length > 0)
          throw new Error(`page file lacks ${missing.length} pages at their final version (first: ${missing[0]})`);
        await this.pageFile.markComplete();
        await postMessage(this.input.storeDir, this.input.migrationId, 'final', request);
      } catch (err) {
        this.storeFailure ??= err;
        this.ctx.log(`page file could not be completed: ${String(err)}`);
      }
    });
  }

  /** Every non-zero page with its generation at stun (typed arrays only: this runs while stunned). */
  private finalPageTable(): { indexes: Uint32Array; versions: Uint32Array } {
    const meta = this.ctx.memory.meta;
    const pageCount = this.ctx.memory.pageCount;
    let count = 0;
    for (let i = 0; i < pageCount; i += 1) if (meta[i * 2] !== 0) count += 1;
    const indexes = new Uint32Array(count);
    const versions = new Uint32Array(count);
    let k = 0;
    for (let i = 0; i < pageCount; i += 1) {
      const generation = meta[i * 2] as number;
      if (generation === 0) continue;
      indexes[k] = i;
      versions[k] = generation;
      k += 1;
    }
    return { indexes, versions };
  }

  /**
   * Asks the destination to finish: over NATS while the stream works, else (or if NATS does not
   * answer) through the page file's mailbox, once the file is complete, since a destination cut off
   * from the stream may lack any page.
   */
  private async handOver(
    request: FinalRequest,
    timeoutMs: number,
  ): Promise<{ reply: FinalReply; lane: 'network' | 'store' }> {
    const deadline = Date.now() + timeoutMs;
    // A `drop` fault makes the source deaf to every answer of this switchover, as if each were lost.
    let deaf = false;
    if (!this.sender.fileOnly) {
      try {
        const reply = await this.requestFinal(request, Math.min(NETWORK_FINAL_TIMEOUT_MS, timeoutMs));
        deaf = await this.faults.hit('source.final-reply');
        if (!deaf) return { reply, lane: 'network' };
      } catch (err) {
        this.ctx.log(`final request over NATS failed (${String(err)}); handing over through the page file`);
      }
    }
    // completeStore posts the request in the mailbox once the file is complete.
    await this.storeChain;
    if (this.storeFailure !== undefined) throw this.storeFailure;
    let reply = await waitForMessage<FinalReply>(
      this.input.storeDir,
      this.input.migrationId,
      'final-reply',
      Math.max(0, deadline - Date.now()),
    );
    if (reply && !deaf) deaf = await this.faults.hit('source.final-reply');
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

  private async requestFinal(request: FinalRequest, timeoutMs: number): Promise<FinalReply> {
    const subjects = migrationSubjects(this.input.migrationId);
    const msg = await this.nc.request(subjects.control, Buffer.from(JSON.stringify(request)), { timeout: timeoutMs });
    return JSON.parse(Buffer.from(msg.data).toString('utf8')) as FinalReply;
  }

  /**
   * Resumes the source if it can still own the VM: it claims the epoch after the migration's base
   * epoch for itself; if the destination already holds that epoch, the source stays stunned.
   */
  async rollback(): Promise<boolean> {
    if (this.state === 'handed-over') return false;
    if (this.state === 'rolled-back' || this.state === 'aborted') return true;
    const claim = await claimOwnership(this.input.storeDir, {
      vmId: this.ctx.vmId,
      epoch: this.input.baseEpoch + 1,
      hostId: this.input.hostId,
      migrationId: this.input.migrationId,
    });
    if (!claim.won) {
      this.state = 'handed-over';
      return false;
    }
    this.ctx.vcpu.resume();
    this.state = 'rolled-back';
    return true;
  }

  /** Progress of the round under way, for heartbeats. */
  progress(): { round: number; pagesSent: number; bytesSent: number; state: string } {
    return { round: this.currentRound, ...this.currentRoundStats, state: this.state };
  }

  /** Stops streaming; resumes the guest if it was stunned and still owns the VM. */
  async close(): Promise<boolean> {
    const resumed = this.state === 'stunned' ? await this.rollback() : this.state !== 'handed-over';
    if (this.state === 'streaming') this.state = 'aborted';
    this.sender.close();
    await this.storeChain;
    await this.pageFile.close().catch(() => undefined);
    // A drain waits for the server, which may be gone: bounded, then the connection is closed.
    await Promise.race([this.nc.drain().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
    await this.nc.close().catch(() => undefined);
    return resumed;
  }
}
