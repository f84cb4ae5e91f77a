/**
 * The source side of a migration, living in the source VMM process for the whole migration.
 *
 * Idempotency: each round and the switchover run once; a retried activity that asks for the same
 * round (or the switchover) again gets the same promise, so a host agent restart never sends a
 * round twice or stuns twice. The page file trails the network by at most a bounded lag; each
 * round's manifest is written once its pages are fdatasync'ed, in the background
 * (page-file-durability.ts).
 *
 * Switchover (stun → final pages on the stream while the final manifest is made durable → `final`
 * request to the destination → its reply, see handover.ts) makes no Temporal round trip and does
 * not wait for the page file to catch up: the destination reads from the file only pages it lacks,
 * and for those it waits until the source has marked the file complete. If the destination does
 * not confirm, the source claims the next ownership epoch for itself and, only if it wins, resumes
 * the guest.
 */
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import type { VmmContext } from '../vmm/extensions';
import type { GuestHold } from '../vmm/guest-run';
import { claimOwnership, type PageFile, type PageStore } from '../store/page-store';
import { BATCH_FLAG_FINAL } from './batch-format';
import { FILE_ONLY_MAX_LAG_BYTES, PageSender } from './page-sender';
import type { FaultPoints } from './fault-points';
import { SwitchoverError } from './errors';
import { finalPageTable, mergePageLists } from './memory-scan';
import { handOver, NETWORK_FINAL_TIMEOUT_MS, type HandoverOutcome } from './handover';
import { PageFileDurability } from './page-file-durability';
import type {
  FinalRequest,
  OutgoingStartInput,
  RoundStats,
  RoundThrottleInput,
  SwitchoverStats,
} from '../model/protocol';
import { MigrationThrottle } from './round-throttle';
import { MessageAuth, type SealedMessage } from './message-auth';
import { PageHashes } from './page-hashes';
import { PageCipher } from './page-cipher';
import { sealFinalRequest } from './control-messages';
import { resolveEngineDeps, type EngineDeps } from './engine-deps';
import type { MessageBus } from './message-bus';
import { migrationSubjects } from './subjects';
import type { StoreOutage } from '../store/page-store';

/**
 * How long a switchover waits, before the stun and with the guest running, for a store that cannot
 * take writes to come back (ms). The final manifest must be durable before the handover, so
 * stunning while the store is down would turn the outage into downtime.
 */
export const STORE_RECOVERY_WAIT_MS = 30_000;

/** How long closing waits for the store's writes under way (ms). */
const CLOSE_STORE_WAIT_MS = 5_000;

/** While the page file alone carries the pages, a manifest is written after every this many bytes. */
export const FILE_ONLY_MANIFEST_BYTES = 64 * 1024 * 1024;

/** Resolves after `ms`; its timer never holds the process open by itself (the VMM's server does). */
function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Source side of one migration. */
export class OutgoingMigration {
  private readonly rounds = new Map<number, Promise<RoundStats>>();
  private switchoverPromise: Promise<SwitchoverStats> | undefined;
  private readonly durability: PageFileDurability;
  private readonly throttle: MigrationThrottle;
  private currentRound = -1;
  private currentRoundStats = { pagesSent: 0, bytesSent: 0 };
  /** Set once the final request may reach the destination; see rollback(). */
  private finalRequestSent = false;
  /** The switchover's hold on the guest, from the stun until a rollback or the handover. */
  private stun: GuestHold | undefined;
  /**
   * A guest that scans for dirty pages (GuestPages.scansForDirty): what the last round's end
   * collected, for the next round or the switchover to send.
   */
  private carried: Uint32Array | undefined;
  state: 'streaming' | 'stunned' | 'handed-over' | 'rolled-back' | 'aborted' = 'streaming';

  private constructor(
    private readonly ctx: VmmContext,
    readonly input: OutgoingStartInput,
    private readonly nc: MessageBus,
    private readonly store: PageStore,
    private readonly pageFile: PageFile,
    private readonly sender: PageSender,
    private readonly faults: FaultPoints,
    private readonly auth: MessageAuth,
    private readonly hashes: PageHashes,
  ) {
    this.durability = new PageFileDurability(pageFile, sender, store, input.migrationId, (msg) => ctx.log(msg));
    this.throttle = new MigrationThrottle(ctx.vcpu, ctx.memory);
  }

  /**
   * Connects to NATS and creates (or reopens) the page file. `deps` replaces the bus and the store
   * (engine-deps.ts); by default, a NATS connection as `input.nats` says and the store `input.store` names.
   */
  static async start(
    ctx: VmmContext,
    input: OutgoingStartInput,
    faults: FaultPoints,
    deps: Partial<EngineDeps> = {},
  ): Promise<OutgoingMigration> {
    const { connect, openStore } = resolveEngineDeps(deps);
    const store = openStore(input.store);
    const memory = ctx.memory;
    const key = Buffer.from(input.key, 'base64');
    // `encrypt` seals the page file at rest as well as the stream (store/page-seal.ts).
    const pageFile = await store.createPageFile(
      { migrationId: input.migrationId, vmId: ctx.vmId, pageCount: memory.pageCount },
      {
        pageCount: memory.pageCount,
        copyPage: (index, target) => void memory.page(index).copy(target),
        ...(memory.copyVersionedPage ? { copyVersionedPage: memory.copyVersionedPage.bind(memory) } : {}),
      },
      input.encrypt === true ? { migrationKey: key } : {},
    );
    const subjects = migrationSubjects(input.hostId, input.destinationHost, input.migrationId);
    const nc = await connect(input.nats, input.hostId, `ferry-source-${input.migrationId}`, (msg) => ctx.log(msg));
    const auth = new MessageAuth(key, input.migrationId);
    const hashes = new PageHashes(memory.pageCount);
    const cipher = input.encrypt === true ? new PageCipher(key) : undefined;
    const sender = new PageSender(
      nc,
      auth,
      subjects,
      ctx.memory,
      pageFile,
      { batchPages: input.batchPages },
      hashes,
      cipher,
    );
    return new OutgoingMigration(ctx, input, nc, store, pageFile, sender, faults, auth, hashes);
  }

  /**
   * Sends round `round` (once; a repeated call returns the same result). `storeFirst`: the
   * destination now depends on the store (see PageSender.storeFirst); it stays set. `throttle`:
   * the vCPU throttle for the round (round-throttle.ts); absent, the throttle is left as it is.
   */
  sendRound(round: number, storeFirst = false, throttle?: RoundThrottleInput): Promise<RoundStats> {
    if (storeFirst) this.sender.storeFirst = true;
    let promise = this.rounds.get(round);
    if (!promise) {
      promise = this.runRound(round, throttle);
      // A round whose caller went away (its lease lapsed meanwhile) must not crash the VMM.
      promise.catch(() => undefined);
      this.rounds.set(round, promise);
    }
    return promise;
  }

  private async runRound(round: number, throttle: RoundThrottleInput | undefined): Promise<RoundStats> {
    if (this.state !== 'streaming')
      throw new Error(`migration ${this.input.migrationId} is ${this.state}, cannot send round ${round}`);
    const startedAt = performance.now();
    // Clearing the dirty log before reading pages is what makes a concurrently written page show
    // up dirty again for the next round. A guest that scans for them collected at the last round's
    // end; what changed since is found at this round's end.
    const dirty = this.takeCarried() ?? (await this.ctx.memory.collectDirty());
    const indexes = round === 0 ? Uint32Array.from({ length: this.ctx.memory.pageCount }, (_, i) => i) : dirty;
    this.currentRound = round;
    this.currentRoundStats = { pagesSent: 0, bytesSent: 0 };
    this.throttle.beginRound(round, throttle, () => this.currentRoundStats.bytesSent);
    try {
      return await this.sendRoundPages(round, startedAt, dirty, indexes);
    } catch (error) {
      this.throttle.endRound();
      throw error;
    }
  }

  private async sendRoundPages(
    round: number,
    startedAt: number,
    dirty: Uint32Array,
    indexes: Uint32Array,
  ): Promise<RoundStats> {
    let manifestAtBytes = this.sender.storeBytesQueued;
    const sent = await this.sender.sendPages(indexes, round, 0, (s) => {
      this.currentRoundStats = { pagesSent: s.pagesSent, bytesSent: s.bytesSent };
      // With the stream dead, the destination reads the file as it grows: a manifest now and then
      // inside the round tells it what the file holds so far (see store-prefetch.ts).
      if (this.sender.fileOnly && this.sender.storeBytesQueued - manifestAtBytes >= FILE_ONLY_MANIFEST_BYTES) {
        manifestAtBytes = this.sender.storeBytesQueued;
        this.durability.queueRoundManifest(round);
      }
    });
    await this.sender.waitForDrain();
    const durationMs = Math.max(performance.now() - startedAt, 0.001);
    const { pendingDirtyPages, stunScanMs } = await this.findPending();
    this.durability.queueRoundManifest(round);
    return {
      round,
      dirtyPagesAtStart: round === 0 ? this.ctx.memory.pageCount : dirty.length,
      pagesSent: sent.pagesSent,
      zeroPages: sent.zeroPages,
      bytesSent: sent.bytesSent,
      durationMs,
      throughputBytesPerSec: (sent.bytesSent * 1000) / durationMs,
      pendingDirtyPages,
      stunScanMs,
      dirtyRateBytesPerSec: (pendingDirtyPages * PAGE_SIZE_BYTES * 1000) / durationMs,
      storeLagBytes: this.storeLagBytes(),
      lane: this.sender.fileOnly ? 'store' : 'network',
      vcpu: this.ctx.vcpu.stats(),
      throttle: this.throttle.endRound(),
      ...this.storeOutages(),
    };
  }

  /** Sets the vCPU throttle now, as asked for while the migration runs (percent, 0..99). */
  requestThrottle(percent: number): { percent: number } {
    if (this.state !== 'streaming')
      throw new Error(`migration ${this.input.migrationId} is ${this.state}: its throttle no longer applies`);
    this.throttle.request(percent);
    return { percent: this.throttle.percent };
  }

  /** Stuns the guest, sends the rest and hands the VM over (once). */
  switchover(resumeTimeoutMs: number): Promise<SwitchoverStats> {
    this.switchoverPromise ??= this.runSwitchover(resumeTimeoutMs);
    return this.switchoverPromise;
  }

  /**
   * The pages changed since the round's pages were collected, and how long finding them took (the
   * stun finds the last ones the same way). Timed without an await where the guest answers at once
   * (its dirty log), so that other work queued meanwhile is not counted as scan. A guest that scans
   * for them collects them now, for the next round or the switchover (`carried`).
   */
  private async findPending(): Promise<{ pendingDirtyPages: number; stunScanMs: number }> {
    const started = performance.now();
    if (this.ctx.memory.scansForDirty === true) {
      const found = await this.ctx.memory.collectDirty();
      this.carried = this.carried ? mergePageLists(this.carried, found) : found;
      return { pendingDirtyPages: this.carried.length, stunScanMs: performance.now() - started };
    }
    const pending = this.ctx.memory.pendingDirtyCount();
    const pendingDirtyPages = typeof pending === 'number' ? pending : await pending;
    return { pendingDirtyPages, stunScanMs: performance.now() - started };
  }

  /** What the last round's end collected (once), or undefined. */
  private takeCarried(): Uint32Array | undefined {
    const carried = this.carried;
    this.carried = undefined;
    return carried;
  }

  /** Bytes sent that the store does not hold durably yet. */
  private storeLagBytes(): number {
    return this.pageFile.lagBytes ?? this.sender.storeBytesQueued - this.sender.storeBytesSynced;
  }

  /** The store's outages so far, as a field of the figures (nothing if it never had one). */
  private storeOutages(): { storeOutages?: StoreOutage[] } {
    const outages = this.pageFile.storeHealth?.().outages ?? [];
    return outages.length > 0 ? { storeOutages: outages } : {};
  }

  /**
   * Waits, guest running, until the store takes writes again, and, if the destination depends on
   * it, until it trails by at most FILE_ONLY_MAX_LAG_BYTES (what the destination lacks is then
   * mostly there before the stun, not read during the downtime). Throws if the store stays down.
   */
  private async waitForStore(): Promise<void> {
    const deadline = Date.now() + STORE_RECOVERY_WAIT_MS;
    if (this.sender.storeFirst)
      await Promise.race([this.pageFile.waitForWrites(FILE_ONLY_MAX_LAG_BYTES), sleep(STORE_RECOVERY_WAIT_MS)]);
    for (;;) {
      const health = this.pageFile.storeHealth?.();
      if (health?.failure) throw new Error(`the store failed for good: ${health.failure.reason}`);
      const open = health?.outages.find((o) => o.to === undefined);
      if (!open) return;
      if (Date.now() >= deadline)
        throw new Error(
          `the store has not taken writes since ${new Date(open.from).toISOString()} (${open.reason}); ` +
            'switching over would stun the guest until it does',
        );
      await sleep(100);
    }
  }

  private async runSwitchover(resumeTimeoutMs: number): Promise<SwitchoverStats> {
    // Not stunned yet: the guest keeps running whatever the answer.
    await this.waitForStore().catch((err: unknown) => {
      throw new SwitchoverError(this.input.migrationId, (err as Error).message, true, { cause: err });
    });
    const stunAt = Date.now();
    const stunStarted = performance.now();
    // The stun is a hold of its own: a memory check or dump that paused and resumes the guest
    // meanwhile does not un-stun it (see vmm/guest-run.ts).
    this.stun = await this.ctx.run.hold('switchover');
    // Stunned, the guest loses all its time anyway; lifted now, a rollback resumes it unthrottled.
    this.throttle.lift();
    this.state = 'stunned';
    try {
      await this.faults.hit('source.after-stun');
      const round = this.currentRound + 1;
      // A real guest's device state is saved while the last scan reads its memory.
      const deviceState = this.ctx.devices?.save();
      deviceState?.catch(() => undefined);
      const found = await this.ctx.memory.collectDirty();
      const carried = this.takeCarried();
      const dirty = carried ? mergePageLists(carried, found) : found;
      // The last pages and the final manifest are the downtime: no new upload competes with them.
      this.pageFile.setPace?.('paused');
      const { indexes, versions } = finalPageTable(this.ctx.memory);
      const digest = this.ctx.memory.digest();
      const storeLagBytes = Math.min(
        this.storeLagBytes() + dirty.length * PAGE_SIZE_BYTES,
        this.ctx.memory.pageCount * PAGE_SIZE_BYTES,
      );
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
      // Every page's last copy has now gone into a batch: the table holds the content at stun.
      const contentDigest = this.hashes.digest(this.auth);
      if (!this.sender.fileOnly)
        await Promise.race([this.nc.flush().catch(() => undefined), sleep(NETWORK_FINAL_TIMEOUT_MS)]);
      const sentAt = performance.now();
      await manifestDurable;
      const durableAt = performance.now();
      // From here on the destination may need pages the store does not hold yet: full speed.
      this.pageFile.setPace?.('full');
      const request: FinalRequest = {
        type: 'final',
        finalSeq: this.sender.lastSeq,
        digest,
        contentDigest,
        stunAt,
        workload: this.ctx.vcpu.workload(),
        seed: this.ctx.seed,
        ...(deviceState ? { deviceState: (await deviceState).toString('base64') } : {}),
      };
      // From here on the destination may finish (the request goes out, or into the mailbox once the
      // store is complete): only the ownership epoch may decide a rollback. A rollback that came
      // first (an abort while the last pages went out) resumed the guest without it: stop here.
      if (this.state !== 'stunned') throw new Error(`the source was ${this.state} during the switchover`);
      this.finalRequestSent = true;
      const sealed = sealFinalRequest(this.auth, request);
      this.durability.queueCompletion(versions, indexes, sealed);
      if (this.faults.isArmed('source.final-pages-durable')) {
        await this.durability.settled();
        await this.faults.hit('source.final-pages-durable');
      }
      const { reply, lane } = await this.handOver(request, sealed, resumeTimeoutMs);
      if (!reply.ok) throw new Error(reply.reason);
      if (reply.digest !== digest || reply.contentDigest !== contentDigest)
        throw new Error(
          `the destination resumed with digests ${reply.digest}/${reply.contentDigest}, not the source's ${digest}/${contentDigest}`,
        );
      this.handOverOwnership();
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
        rejectedMessages: this.sender.rejectedMessages,
        handoverLane: lane,
        ...this.storeOutages(),
      };
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      // A rollback that cannot reach the store keeps the guest stunned: no copy beats two.
      const rolledBack = await this.rollback().catch((rollbackError: unknown) => {
        this.ctx.log(`rollback after the failed switchover failed: ${String(rollbackError)}`);
        return false;
      });
      throw new SwitchoverError(this.input.migrationId, reason, rolledBack, { cause: err });
    }
  }

  /** Asks the destination to finish (see handover.ts). */
  private handOver(request: FinalRequest, sealed: SealedMessage, timeoutMs: number): Promise<HandoverOutcome> {
    return handOver(
      {
        nc: this.nc,
        controlSubject: this.sender.subjects.control,
        store: this.store,
        migrationId: this.input.migrationId,
        auth: this.auth,
        onRejected: () => (this.sender.rejectedMessages += 1),
        fileOnly: this.sender.fileOnly,
        faults: this.faults,
        log: (msg) => this.ctx.log(msg),
        storeSettled: () => this.durability.settled(),
        storeFailure: () => this.durability.failure,
      },
      request,
      timeoutMs,
      sealed,
    );
  }

  /**
   * Resumes the source if it can still own the VM: it claims the epoch after the migration's base
   * epoch for itself; if the destination already holds that epoch, the source stays stunned.
   */
  async rollback(): Promise<boolean> {
    if (this.state === 'handed-over') return false;
    if (this.state === 'rolled-back' || this.state === 'aborted') return true;
    if (!this.finalRequestSent) {
      // The destination never got the final request, nor can it find one in the mailbox: it cannot
      // resume, and the source still holds its epoch.
      this.stun?.release();
      this.state = 'rolled-back';
      return true;
    }
    const claim = await claimOwnership(this.store, {
      vmId: this.ctx.vmId,
      epoch: this.input.baseEpoch + 1,
      hostId: this.input.hostId,
      migrationId: this.input.migrationId,
    });
    if (!claim.won) {
      this.handOverOwnership();
      return false;
    }
    this.stun?.release();
    this.state = 'rolled-back';
    return true;
  }

  /** The destination holds the VM now: this guest never runs again, whoever asks. */
  private handOverOwnership(): void {
    this.ctx.run.giveUpOwnership();
    this.state = 'handed-over';
    this.stun?.release();
  }

  /**
   * Resolves once the store holds what the source queued for it, the completion of the page file
   * included if the switchover got that far (after a handover the store is needed only to keep the
   * page file, see `keepPageFile`).
   */
  async storeSettled(): Promise<void> {
    this.pageFile.setPace?.('full');
    await this.durability.settled();
  }

  /** Progress of the round under way, for heartbeats. */
  progress(): { round: number; pagesSent: number; bytesSent: number; state: string; rejectedMessages: number } {
    return {
      round: this.currentRound,
      ...this.currentRoundStats,
      state: this.state,
      rejectedMessages: this.sender.rejectedMessages,
    };
  }

  /**
   * Releases the migration because its lease lapsed (its workflow is gone): lets a switchover under
   * way end (it is bounded), then closes as `close` does (throttle lifted, guest resumed if it still
   * owns the VM, connections closed), and removes the migration's files from the store if the
   * destination can no longer need them (no final request ever left). Throws if closing fails.
   */
  async expire(): Promise<void> {
    await this.switchoverPromise?.catch(() => undefined);
    await this.close();
    if (!this.finalRequestSent)
      await this.store
        .removeMigration(this.input.migrationId)
        .catch((err: unknown) => this.ctx.log(`removing the files of the lapsed migration failed: ${String(err)}`));
  }

  /** Stops streaming; resumes the guest if it was stunned and still owns the VM. */
  async close(): Promise<boolean> {
    // A migration that ends without a handover leaves the guest as it found it: unthrottled.
    if (this.state !== 'handed-over') this.throttle.lift();
    const resumed = this.state === 'stunned' ? await this.rollback() : this.state !== 'handed-over';
    if (this.state === 'streaming') this.state = 'aborted';
    this.sender.close();
    // After the handover nothing needs the store any more. A store that is down holds these back;
    // the VMM must still answer, so both are bounded.
    if (this.state !== 'handed-over') await Promise.race([this.durability.settled(), sleep(CLOSE_STORE_WAIT_MS)]);
    await Promise.race([this.pageFile.close().catch(() => undefined), sleep(CLOSE_STORE_WAIT_MS)]);
    // A drain waits for the server, which may be gone: bounded, then the connection is closed.
    await Promise.race([this.nc.drain().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000).unref())]);
    await this.nc.close().catch(() => undefined);
    return resumed;
  }
}
