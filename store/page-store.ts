/**
 * The shared store as the data plane and the host agents see it, whatever holds it: a directory on a
 * shared filesystem (directory-page-store.ts: one page file at fixed offsets, like QEMU's mapped-ram)
 * or an S3 bucket (object-page-store.ts: chunk objects of consecutive pages). Both keep the same
 * promises:
 *
 * - A manifest never claims more than the store durably holds: a round manifest is written only
 *   after `sync()` said its pages are durable, and a reader that finds one can read them.
 * - Ownership of a VM moves from epoch e to e+1 only by a create-if-absent of epoch e+1, so of all
 *   hosts that try, exactly one wins (see ownership.ts).
 * - A mailbox message is seen whole or not at all, and is never posted into a migration whose files
 *   were removed.
 * - The writer may trail the stream: pages handed to `writePages` become durable later, and
 *   `sync()` says when.
 */
import type { StoreOutage } from '../model/protocol';
import type { Manifest } from './manifest-format';
import type { VmHistoryRecord } from './vm-history';

/** Most pages a page file may hold: a 16 GiB guest (vmm/vm-spec.ts MAX_MEMORY_BYTES) of 4 KiB pages. */
export const MAX_PAGE_FILE_PAGES = (16 * 1024 ** 3) / 4096;

/** What a page file's header records. */
export interface PageFileHeader {
  migrationId: string;
  vmId: string;
  pageCount: number;
  /** The pages are sealed at rest (page-seal.ts); absent, in clear. */
  sealed?: boolean;
}

/**
 * The migration key (32 bytes) of a page file sealed at rest (page-seal.ts). Creating a page file
 * with it seals its pages; opening one needs it if the file is sealed.
 */
export interface PageFileKey {
  migrationKey?: Buffer;
}

/** A page entry of a write: its index and version. */
export interface PageEntry {
  index: number;
  version: number;
}

/**
 * The guest memory a writer may read from instead of the batches it is handed: a store slower than
 * the stream uploads the pages' content as it is when their turn comes (see object-page-store.ts).
 */
export interface PageSource {
  readonly pageCount: number;
  /** Copies page `index` as it is now into `target` (4 KiB); the copy's header says its version. */
  copyPage(index: number, target: Buffer): void;
  /**
   * For a guest that keeps versions apart from its pages (a real guest's page has no header; see
   * GuestPages.copyVersionedPage): copies page `index` into `target` and returns the version of
   * the copy, or -1 when the copy may be torn. Used instead of `copyPage` where present.
   */
  copyVersionedPage?(index: number, target: Buffer): number;
}

/** The newest round manifest and its stamp, which differs whenever the newest manifest is another. */
export interface NewestRoundManifest {
  manifest: Manifest;
  stamp: string;
}

/** One migration's pages on the store, opened by the source (writer) or the destination (reader). */
export interface PageFile {
  readonly header: PageFileHeader;
  /** Where the pages are, for messages (a path, or `s3://bucket/key` at an endpoint). */
  readonly location: string;
  /** Version of each page as durably held (after the last sync). */
  readonly syncedVersions: Uint32Array;
  /** Slots of a sealed file that failed their tag when read (see page-seal.ts); 0 for a clear file. */
  readonly rejectedSlots: number;
  /** Bytes handed to `writePages` and not yet written to the store. */
  readonly pendingBytes: number;
  /** Bytes of memory the writer holds for them (0 for a writer that reads from its PageSource). */
  readonly bufferedBytes: number;
  /**
   * Bytes of pages handed over that are not durable yet, each page counted once, if the writer
   * knows (else the caller counts what it handed over since the last sync).
   */
  readonly lagBytes?: number;

  /**
   * Queues `entries` (4 KiB each in `data`, in order) for the store; `data` must not be reused.
   * Never waits. Errors surface from the next `sync()`.
   */
  writePages(entries: readonly PageEntry[], data: Buffer): void;
  /** Resolves once at most `maxPendingBytes` handed to `writePages` are not yet written. */
  waitForWrites(maxPendingBytes: number): Promise<void>;
  /**
   * Resolves once every page handed over before this call is durable; returns the synced
   * versions. Writes handed over later go on meanwhile. Throws PageStoreError.
   */
  sync(): Promise<Uint32Array>;
  /** Durably writes `manifest` (a round's, replacing an earlier one of that round, or the final one). */
  writeManifest(manifest: Manifest): Promise<void>;
  /** Durably records that every page of the final manifest is held at its final version. */
  markComplete(): Promise<void>;

  /** Waits up to `timeoutMs` for the source's completion mark; resolves whether it appeared. */
  waitForComplete(timeoutMs: number, pollMs?: number): Promise<boolean>;
  /** The final manifest if the source has written it, else undefined. */
  readFinalManifest(): Promise<Manifest | undefined>;
  /**
   * The newest round manifest, unless there is none yet or its stamp is `seenStamp` (then
   * undefined, without reading it). Throws PageStoreError if it cannot be read.
   */
  readNewestRoundManifest(seenStamp?: string): Promise<NewestRoundManifest | undefined>;
  /**
   * Reads `count` consecutive pages from `firstIndex` into `target` as the store holds them now: a
   * page never written reads as zeros, and a page may be older or torn (every page checks itself).
   */
  readPages(firstIndex: number, count: number, target: Buffer): Promise<void>;
  /** Finishes what is queued and releases the file. */
  close(): Promise<void>;
  /**
   * Outages the writer rode out (the store unreachable, retried meanwhile) and the failure that
   * stopped it, if any. A writer whose every failure surfaces from sync() at once may omit it.
   */
  storeHealth?(): StoreHealth;
  /**
   * How hard a writer that trails the stream may go: `full`, `yield` (the stream is healthy and
   * sending, and goes first) or `paused` (nothing new starts). A writer that never trails may omit it.
   */
  setPace?(pace: WriterPace): void;
}

/** See PageFile.setPace. */
export type WriterPace = 'full' | 'yield' | 'paused';

export type { StoreOutage } from '../model/protocol';

/** What a writer went through; see PageFile.storeHealth. */
export interface StoreHealth {
  outages: StoreOutage[];
  /** Set once writes stopped for good. */
  failure?: { at: number; key: string; reason: string };
}

/** One epoch of a VM's ownership. */
export interface OwnershipRecord {
  vmId: string;
  epoch: number;
  hostId: string;
  migrationId: string;
  /** ISO time the record was written. */
  at: string;
}

/** A claim made ready in advance, so that committing it costs one create-if-absent. */
export interface PreparedClaim {
  record: OwnershipRecord;
  /** Adapter data (a temp file for the directory store). */
  token?: string;
}

/** A shared store: pages, manifests, mailboxes and ownership records of every migration in it. */
export interface PageStore {
  /** What the user named: a directory path or `s3://bucket/prefix`. */
  readonly ref: string;
  /** Where it is, for messages. */
  readonly location: string;

  /** Checks that the store can be written; throws StoreUnavailableError naming it and why. */
  assertWritable(): Promise<void>;
  /**
   * Creates a migration's page file, or reopens it (idempotent); `source` is the guest's memory.
   * With `key.migrationKey` the pages are sealed at rest. Throws PageStoreError if the store holds
   * the file of another VM, another size, or sealed the other way.
   */
  createPageFile(header: Omit<PageFileHeader, 'sealed'>, source: PageSource, key?: PageFileKey): Promise<PageFile>;
  /**
   * Opens an existing page file for reading; throws PageStoreError if it is missing or foreign, or
   * sealed and `key.migrationKey` is absent.
   */
  openPageFile(migrationId: string, key?: PageFileKey): Promise<PageFile>;
  /** Deletes everything of the migration (idempotent). */
  removeMigration(migrationId: string): Promise<void>;

  /** Durably posts `body` as message `name`; throws PageStoreError if the migration's files are gone. */
  postMessage(migrationId: string, name: string, body: unknown): Promise<void>;
  /** Message `name` if it has been posted, else undefined. */
  readMessage<T>(migrationId: string, name: string): Promise<T | undefined>;

  /** The record with the highest epoch, or undefined if the VM was never registered. */
  readOwner(vmId: string): Promise<OwnershipRecord | undefined>;
  /** Makes a claim ready to commit. */
  prepareClaim(claim: Omit<OwnershipRecord, 'at'>): Promise<PreparedClaim>;
  /**
   * Creates the claimed epoch if nobody has; returns the winning record either way. Idempotent for
   * the same host and migration.
   */
  commitClaim(prepared: PreparedClaim): Promise<{ won: boolean; record: OwnershipRecord }>;
  /** Discards a prepared claim that will not be committed. */
  discardClaim(prepared: PreparedClaim): Promise<void>;
  /** Forgets the VM's ownership records if `hostId` holds the latest epoch; returns whether it did. */
  releaseOwnership(vmId: string, hostId: string): Promise<boolean>;
  /** What the VM's last converged migration learned (store/vm-history.ts), or undefined. */
  readVmHistory(vmId: string): Promise<VmHistoryRecord | undefined>;
  /** Replaces the VM's history record. */
  writeVmHistory(record: VmHistoryRecord): Promise<void>;
  /** Releases connections. */
  close(): void;
}

/** Prepares and commits a claim in one go; see PageStore.commitClaim. */
export async function claimOwnership(
  store: PageStore,
  claim: Omit<OwnershipRecord, 'at'>,
): Promise<{ won: boolean; record: OwnershipRecord }> {
  return store.commitClaim(await store.prepareClaim(claim));
}

/** Waits up to `timeoutMs` for message `name`; undefined if it did not come. */
export async function waitForMessage<T>(
  store: PageStore,
  migrationId: string,
  name: string,
  timeoutMs: number,
  pollMs = DEFAULT_MAILBOX_POLL_MS,
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const message = await store.readMessage<T>(migrationId, name);
    if (message !== undefined || Date.now() >= deadline) return message;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Default interval at which `waitForMessage` looks again (ms). */
export const DEFAULT_MAILBOX_POLL_MS = 20;
