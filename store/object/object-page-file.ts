/**
 * One migration's page file on an object store (layout in object-page-layout.ts): the source's
 * writer, which uploads chunks from guest memory (chunk-uploader.ts), or the destination's reader,
 * which reads pages with ranged GETs (chunk-reader.ts); both read and write manifests
 * (object-page-manifests.ts).
 *
 * Sealed at rest (`policy.encrypt`, page-seal.ts): the header says `"sealed": true`, each chunk
 * holds sealed slots, and both sides need the migration key.
 *
 * Opening (either way) starts `syncedVersions` from the newest round manifest and the final one,
 * so a source that reopens its page file after a crash knows what the store already holds.
 */
import { PageStoreError } from '../errors';
import { ChunkUploader } from './chunk-uploader';
import { readChunkPages } from './chunk-reader';
import type { StoreHealth } from './chunk-upload-health';
import type { Manifest } from '../manifest-format';
import { headerKey, migrationPrefix } from './object-page-layout';
import { ObjectPageManifests } from './object-page-manifests';
import { PageSealer } from '../page-seal';
import type { ObjectStore } from './object-store';
import {
  MAX_PAGE_FILE_PAGES,
  type NewestRoundManifest,
  type PageEntry,
  type PageFile,
  type PageFileHeader,
  type PageFileKey,
  type PageSource,
  type WriterPace,
} from '../page-store';

/** Default interval at which `waitForComplete` heads the completion mark (ms). */
export const DEFAULT_COMPLETE_POLL_MS = 20;

function storeError(message: string, objects: ObjectStore, migrationId: string, key: string, cause: unknown) {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new PageStoreError(`${message}: ${reason}`, { migrationId, path: `${objects.location} ${key}`, cause });
}

function parseHeader(body: Buffer, migrationId: string): PageFileHeader {
  const header = JSON.parse(body.toString('utf8')) as Partial<PageFileHeader>;
  const { vmId, pageCount, sealed } = header;
  if (header.migrationId !== migrationId || typeof vmId !== 'string' || !Number.isInteger(pageCount))
    throw new Error(`header is not that of migration ${migrationId}: ${body.toString('utf8').slice(0, 200)}`);
  if ((pageCount as number) < 1 || (pageCount as number) > MAX_PAGE_FILE_PAGES)
    throw new Error(`header names ${pageCount} pages, expected 1..${MAX_PAGE_FILE_PAGES}`);
  if (sealed !== undefined && sealed !== true)
    throw new Error(`header's sealed is ${JSON.stringify(sealed)}, not true`);
  return { migrationId, vmId, pageCount: pageCount as number, ...(sealed ? { sealed } : {}) };
}

/** The sealer of a sealed file; throws if there is no key to open it. */
function sealerFor(header: PageFileHeader, key: PageFileKey): PageSealer | undefined {
  if (header.sealed !== true) return undefined;
  if (!key.migrationKey) throw new Error('the page file is sealed at rest, and no migration key was given');
  return new PageSealer(key.migrationKey, header.migrationId);
}

/** A page file on an object store; see the module comment. */
export class ObjectPageFile implements PageFile {
  readonly location: string;
  readonly syncedVersions: Uint32Array;
  private readonly manifests: ObjectPageManifests;
  private readonly uploader: ChunkUploader | undefined;

  private constructor(
    private readonly objects: ObjectStore,
    readonly header: PageFileHeader,
    private readonly sealer: PageSealer | undefined,
    source: PageSource | undefined,
    uploads?: ObjectStore,
  ) {
    this.location = `${objects.location} ${migrationPrefix(header.migrationId)}`;
    this.syncedVersions = new Uint32Array(header.pageCount);
    this.manifests = new ObjectPageManifests(objects, header.migrationId);
    this.uploader =
      source && new ChunkUploader(uploads ?? objects, header.migrationId, source, this.syncedVersions, sealer);
  }

  /**
   * Puts the header (or finds the same one) and opens the file for writing from `source`. Throws
   * PageStoreError if the store fails, or holds another header under this migration id.
   */
  /**
   * `uploads` (default `objects`) carries the chunk uploads: it should retry briefly, since the
   * uploader retries forever itself and an outage is noticed (and reported) only once a put fails.
   */
  static async create(
    objects: ObjectStore,
    created: Omit<PageFileHeader, 'sealed'>,
    source: PageSource,
    uploads: ObjectStore = objects,
    secret: PageFileKey = {},
  ): Promise<ObjectPageFile> {
    const { migrationId, vmId, pageCount } = created;
    const header: PageFileHeader = { migrationId, vmId, pageCount, ...(secret.migrationKey ? { sealed: true } : {}) };
    const key = headerKey(migrationId);
    if (source.pageCount !== pageCount)
      throw new RangeError(`page source has ${source.pageCount} pages, the header of ${migrationId} ${pageCount}`);
    try {
      const stored = await objects.get(key);
      const existing = stored && parseHeader(stored.body, migrationId);
      if (existing && (existing.vmId !== vmId || existing.pageCount !== pageCount))
        throw new Error(`the store holds the header of VM ${existing.vmId} with ${existing.pageCount} pages`);
      if (existing && existing.sealed !== header.sealed)
        throw new Error(
          existing.sealed === true
            ? 'the store holds a page file sealed at rest, and this migration does not encrypt'
            : 'the store holds a page file of clear pages, and this migration encrypts them',
        );
      if (!existing) await objects.put(key, Buffer.from(JSON.stringify(header)));
      const file = new ObjectPageFile(objects, header, sealerFor(header, secret), source, uploads);
      await file.manifests.loadInto(file.syncedVersions);
      return file;
    } catch (error) {
      throw storeError('cannot create the page file', objects, migrationId, key, error);
    }
  }

  /**
   * Opens the migration's page file for reading; throws PageStoreError if its header is missing or
   * foreign, or the file is sealed and `secret.migrationKey` is absent.
   */
  static async open(objects: ObjectStore, migrationId: string, secret: PageFileKey = {}): Promise<ObjectPageFile> {
    const key = headerKey(migrationId);
    try {
      const stored = await objects.get(key);
      if (!stored) throw new Error('its header is missing (never created, or removed)');
      const header = parseHeader(stored.body, migrationId);
      const file = new ObjectPageFile(objects, header, sealerFor(header, secret), undefined);
      await file.manifests.loadInto(file.syncedVersions);
      return file;
    } catch (error) {
      throw storeError('cannot open the page file', objects, migrationId, key, error);
    }
  }

  /** Bytes of pages marked for upload and not yet uploaded (the store's lag behind the stream). */
  get pendingBytes(): number {
    return this.uploader?.pendingBytes ?? 0;
  }

  /** Bytes of the chunk images being uploaded (at most 8 MiB); the batches handed over are never kept. */
  /** Every page marked and not yet uploaded is not durable: the same as pendingBytes. */
  get lagBytes(): number {
    return this.pendingBytes;
  }

  get bufferedBytes(): number {
    return this.uploader?.bufferedBytes ?? 0;
  }

  /**
   * Marks the pages of `entries` for upload; `data` and the versions are not used: the upload
   * copies each page from the page source when its chunk's turn comes. Throws on a reader.
   */
  writePages(entries: readonly PageEntry[], _data: Buffer): void {
    this.writer().mark(entries.map((entry) => entry.index));
  }

  waitForWrites(maxPendingBytes: number): Promise<void> {
    return this.uploader?.waitForWrites(maxPendingBytes) ?? Promise.resolve();
  }

  /**
   * Resolves once every page marked before the call is in the store, uploaded after its mark;
   * rejects with PageStoreError once an upload failed for good (every later call too).
   */
  async sync(): Promise<Uint32Array> {
    await this.uploader?.sync();
    return this.syncedVersions;
  }

  /**
   * What the uploads went through: outages (the store unreachable from `from` to `to`, retried
   * meanwhile) and the permanent failure, if any. Empty for a reader.
   */
  storeHealth(): StoreHealth {
    return this.uploader?.storeHealth() ?? { outages: [] };
  }

  /** See PageFile.setPace. */
  setPace(pace: WriterPace): void {
    this.uploader?.setPace(pace);
  }

  writeManifest(manifest: Manifest): Promise<void> {
    return this.manifests.write(manifest);
  }

  markComplete(): Promise<void> {
    return this.manifests.markComplete();
  }

  waitForComplete(timeoutMs: number, pollMs = DEFAULT_COMPLETE_POLL_MS): Promise<boolean> {
    return this.manifests.waitForComplete(timeoutMs, pollMs);
  }

  readFinalManifest(): Promise<Manifest | undefined> {
    return this.manifests.readFinal();
  }

  readNewestRoundManifest(seenStamp?: string): Promise<NewestRoundManifest | undefined> {
    return this.manifests.readNewestRound(seenStamp);
  }

  readPages(firstIndex: number, count: number, target: Buffer): Promise<void> {
    const { migrationId, pageCount } = this.header;
    return readChunkPages(this.objects, migrationId, pageCount, { firstIndex, count, target }, this.sealer);
  }

  /** Slots that failed their tag when read (see page-seal.ts); 0 for a clear file. */
  get rejectedSlots(): number {
    return this.sealer?.rejectedSlots ?? 0;
  }

  /** Stops the uploads after those in flight; pages still only marked are not uploaded (sync() first). */
  async close(): Promise<void> {
    await this.uploader?.close();
  }

  private writer(): ChunkUploader {
    if (this.uploader) return this.uploader;
    throw new Error(`page file of migration ${this.header.migrationId} was opened for reading, not writing`);
  }
}
