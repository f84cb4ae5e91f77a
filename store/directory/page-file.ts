/**
 * The migration's page file on a shared directory, laid out like QEMU's mapped-ram: a 4 KiB header,
 * then page i at the fixed offset HEADER_BYTES + i * PAGE_SIZE_BYTES (sparse: zero pages are never
 * written). A file sealed at rest (format version 2, page-seal.ts) holds slots of SEALED_SLOT_BYTES
 * instead, slot i at HEADER_BYTES + i * SEALED_SLOT_BYTES; pages are sealed as they are queued and
 * opened as they are read, so the rest of the file's logic is the same. Beside it, one manifest per
 * round and a final manifest say which version of which page the file holds; a manifest is written
 * only after the pages it lists are fdatasync'ed, so a manifest never claims more than the file
 * durably holds.
 *
 * Semantics: writes are positional and idempotent (writing the same batch twice leaves the same
 * file), so a retried activity may rewrite what it wrote before. Writes are applied strictly in
 * submission order by one queue, so a newer version of a page can never be overtaken by an older one.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { PageFileHeaderError, PageStoreError, StoreUnavailableError } from '../errors';
import { decodeManifest, encodeManifest, type Manifest } from '../manifest-format';
import { writeFileDurably } from '../durable-file';
import {
  MAX_PAGE_FILE_PAGES,
  type NewestRoundManifest,
  type PageEntry,
  type PageFile as PageFileApi,
  type PageFileHeader,
  type PageFileKey,
} from '../page-store';
import { readNewestRoundManifest } from './round-manifests';
import { makePrivateDir, pathUnder, PRIVATE_FILE_MODE } from '../safe-path';
import { PageSealer, SEALED_SLOT_BYTES, slotBytesOf } from '../page-seal';

export type { PageEntry, PageFileHeader } from '../page-store';

/** Bytes of the page file header; the page region starts right after it. */
export const PAGE_FILE_HEADER_BYTES = 4096;
const PAGE_FILE_MAGIC = 'FRYPAGE1';
/** Format version of a file of clear pages. */
const CLEAR_FORMAT_VERSION = 1;
/** Format version of a file of sealed slots (page-seal.ts). */
const SEALED_FORMAT_VERSION = 2;
/** Byte where the header's JSON (migration and VM id) starts, after its length. */
const META_OFFSET = 28;
/** Name of the page file inside the migration's folder. */
const PAGES_FILE = 'pages.ferry';
/** Every name of a migration's folder the store writes, and the only ones its removal deletes. */
const MIGRATION_FILE = /^(pages\.ferry|manifest-(\d{5}|final)\.bin|complete)(\.\d+\.tmp)?$/;
/** Names in the `control/` folder (mailbox messages and their temp files). */
const MESSAGE_FILE = /^[A-Za-z0-9_-]+\.json(\.\d+\.tmp)?$/;

/**
 * Folder of one migration inside the store directory; throws PathEscapeError for an id that would
 * put it anywhere but strictly inside `<store>/migrations`.
 */
export function migrationDir(storeDir: string, migrationId: string): string {
  return pathUnder(path.join(storeDir, 'migrations'), migrationId, 'migrationId');
}

/** Checks that `storeDir` exists (creating it) and is writable; throws StoreUnavailableError. */
export async function assertStoreWritable(storeDir: string): Promise<void> {
  try {
    await makePrivateDir(storeDir);
    const probe = path.join(storeDir, `.probe-${process.pid}-${Date.now()}`);
    await fs.writeFile(probe, 'ok');
    await fs.unlink(probe);
  } catch (err) {
    throw new StoreUnavailableError(storeDir, err);
  }
}

function encodeHeader(header: PageFileHeader): Buffer {
  const buf = Buffer.alloc(PAGE_FILE_HEADER_BYTES);
  buf.write(PAGE_FILE_MAGIC, 0, 'ascii');
  buf.writeUInt32LE(header.sealed === true ? SEALED_FORMAT_VERSION : CLEAR_FORMAT_VERSION, 8);
  buf.writeUInt32LE(PAGE_SIZE_BYTES, 12);
  buf.writeUInt32LE(header.pageCount, 16);
  buf.writeUInt32LE(PAGE_FILE_HEADER_BYTES, 20);
  const meta = Buffer.from(JSON.stringify({ migrationId: header.migrationId, vmId: header.vmId }));
  buf.writeUInt32LE(meta.length, 24);
  meta.copy(buf, 28);
  return buf;
}

/**
 * The header in `buf`, checked against what the reader expects: the magic and format version (1:
 * clear, 2: sealed), this build's page size and page offset, a page count of 1..MAX_PAGE_FILE_PAGES
 * that matches the file's size (`fileBytes`), and `migrationId`. Throws PageFileHeaderError naming
 * the field.
 */
export function decodePageFileHeader(
  buf: Buffer,
  file: string,
  migrationId: string,
  fileBytes: number,
): PageFileHeader {
  const bad = (problem: string): never => {
    throw new PageFileHeaderError(file, problem);
  };
  if (buf.length < PAGE_FILE_HEADER_BYTES) bad(`it is ${buf.length} bytes, shorter than ${PAGE_FILE_HEADER_BYTES}`);
  if (buf.toString('ascii', 0, 8) !== PAGE_FILE_MAGIC) bad('it is not a ferry page file (wrong magic)');
  const version = buf.readUInt32LE(8);
  if (version !== CLEAR_FORMAT_VERSION && version !== SEALED_FORMAT_VERSION)
    bad(`format version ${version}, expected ${CLEAR_FORMAT_VERSION} or ${SEALED_FORMAT_VERSION}`);
  const sealed = version === SEALED_FORMAT_VERSION;
  const pageSize = buf.readUInt32LE(12);
  if (pageSize !== PAGE_SIZE_BYTES) bad(`page size ${pageSize}, expected ${PAGE_SIZE_BYTES}`);
  const pageCount = buf.readUInt32LE(16);
  if (pageCount < 1 || pageCount > MAX_PAGE_FILE_PAGES)
    bad(`page count ${pageCount}, expected 1..${MAX_PAGE_FILE_PAGES}`);
  const pagesOffset = buf.readUInt32LE(20);
  if (pagesOffset !== PAGE_FILE_HEADER_BYTES) bad(`pages start at ${pagesOffset}, expected ${PAGE_FILE_HEADER_BYTES}`);
  const expectedBytes = pageFileBytes(pageCount, sealed);
  if (fileBytes !== expectedBytes)
    bad(`${pageCount} ${sealed ? 'sealed ' : ''}pages need a file of ${expectedBytes} bytes, it has ${fileBytes}`);
  const metaLength = buf.readUInt32LE(24);
  if (metaLength > PAGE_FILE_HEADER_BYTES - META_OFFSET) bad(`its id field claims ${metaLength} bytes`);
  let meta: { migrationId?: unknown; vmId?: unknown } = {};
  try {
    meta = JSON.parse(buf.toString('utf8', META_OFFSET, META_OFFSET + metaLength)) as typeof meta;
  } catch {
    bad('its id field is not JSON');
  }
  if (meta.migrationId !== migrationId)
    bad(`it belongs to migration ${JSON.stringify(meta.migrationId)}, expected ${JSON.stringify(migrationId)}`);
  if (typeof meta.vmId !== 'string' || meta.vmId === '') bad(`its VM id ${JSON.stringify(meta.vmId)} is not an id`);
  return { migrationId, vmId: meta.vmId as string, pageCount, ...(sealed ? { sealed } : {}) };
}

/** Bytes of a page file of `pageCount` pages, clear or sealed. */
function pageFileBytes(pageCount: number, sealed: boolean | undefined): number {
  return PAGE_FILE_HEADER_BYTES + pageCount * (sealed === true ? SEALED_SLOT_BYTES : PAGE_SIZE_BYTES);
}

/** The page file of one migration, opened by the source (writer) or the destination (reader). */
export class PageFile implements PageFileApi {
  /** Version of each page as durably recorded in the file (after the last sync). */
  readonly syncedVersions: Uint32Array;
  private readonly writtenVersions: Uint32Array;
  private queue: Promise<void> = Promise.resolve();
  private queuedBytes = 0;
  private failure: unknown;
  /** Bytes of one page's place in the file: a page, or a sealed slot. */
  private readonly slotBytes: number;

  private constructor(
    readonly dir: string,
    readonly header: PageFileHeader,
    private readonly handle: fs.FileHandle,
    private readonly sealer: PageSealer | undefined,
  ) {
    this.syncedVersions = new Uint32Array(header.pageCount);
    this.writtenVersions = new Uint32Array(header.pageCount);
    this.slotBytes = slotBytesOf(sealer);
  }

  /**
   * Creates the page file and its header, or reopens it if it exists (idempotent); sealed at rest
   * with `key.migrationKey`. Throws PageStoreError if an existing file is another VM's, of another
   * size, or sealed the other way.
   */
  static async create(
    storeDir: string,
    created: Omit<PageFileHeader, 'sealed'>,
    key: PageFileKey = {},
  ): Promise<PageFile> {
    const header: PageFileHeader = { ...created, ...(key.migrationKey ? { sealed: true } : {}) };
    const dir = migrationDir(storeDir, header.migrationId);
    const file = path.join(dir, PAGES_FILE);
    try {
      await makePrivateDir(dir);
      const handle = await fs.open(file, 'a+', PRIVATE_FILE_MODE).then(async (h) => {
        await h.chmod(PRIVATE_FILE_MODE);
        await h.close();
        return fs.open(file, 'r+');
      });
      try {
        const { size } = await handle.stat();
        if (size < PAGE_FILE_HEADER_BYTES) {
          await handle.write(encodeHeader(header), 0, PAGE_FILE_HEADER_BYTES, 0);
          await handle.truncate(pageFileBytes(header.pageCount, header.sealed));
          await handle.datasync();
        } else {
          assertSameFile(await readHeader(handle, file, header.migrationId), header, file);
        }
        const pageFile = new PageFile(dir, header, handle, sealerFor(header, key, file));
        await pageFile.loadManifests();
        return pageFile;
      } catch (err) {
        await handle.close();
        throw err;
      }
    } catch (err) {
      throw new PageStoreError(`cannot create page file: ${reasonOf(err)}`, {
        migrationId: header.migrationId,
        path: file,
        cause: err,
      });
    }
  }

  /**
   * Opens an existing page file for reading; throws PageStoreError if it is missing or foreign, or
   * sealed and `key.migrationKey` is absent.
   */
  static async open(storeDir: string, migrationId: string, key: PageFileKey = {}): Promise<PageFile> {
    const dir = migrationDir(storeDir, migrationId);
    const file = path.join(dir, PAGES_FILE);
    try {
      const handle = await fs.open(file, 'r');
      try {
        const header = await readHeader(handle, file, migrationId);
        const pageFile = new PageFile(dir, header, handle, sealerFor(header, key, file));
        await pageFile.loadManifests();
        return pageFile;
      } catch (err) {
        await handle.close();
        throw err;
      }
    } catch (err) {
      throw new PageStoreError(`cannot open page file: ${reasonOf(err)}`, { migrationId, path: file, cause: err });
    }
  }

  /** Slots that failed their tag when read (see page-seal.ts); 0 for a clear file. */
  get rejectedSlots(): number {
    return this.sealer?.rejectedSlots ?? 0;
  }

  /** The page file's path. */
  get location(): string {
    return path.join(this.dir, PAGES_FILE);
  }

  /** Bytes handed to `writePages` that are not yet written to the file. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** The writes queue holds the buffers it was handed until they are written. */
  get bufferedBytes(): number {
    return this.queuedBytes;
  }

  /** See round-manifests.ts. */
  readNewestRoundManifest(seenStamp?: string): Promise<NewestRoundManifest | undefined> {
    return readNewestRoundManifest(this, seenStamp);
  }

  /**
   * Queues positional writes of the pages in `clear` (4 KiB each, in the order of `entries`). A clear
   * file writes `clear` as is, without a copy, so the caller must not reuse it; a sealed file seals
   * the pages into slots of its own first. Pages with consecutive indexes go out in one call. Errors
   * surface from the next `sync()`.
   */
  writePages(entries: readonly PageEntry[], clear: Buffer): void {
    if (entries.length === 0) return;
    const data = this.sealer ? Buffer.allocUnsafe(entries.length * this.slotBytes) : clear;
    this.sealer?.sealAll(entries.length, (k) => (entries[k] as PageEntry).index, clear, data);
    const slotBytes = this.slotBytes;
    const runs: { offset: number; data: Buffer; entries: PageEntry[] }[] = [];
    entries.forEach((entry, i) => {
      const last = runs[runs.length - 1];
      const lastEntry = last?.entries[last.entries.length - 1];
      if (last && lastEntry && lastEntry.index + 1 === entry.index) {
        last.entries.push(entry);
      } else {
        runs.push({
          offset: PAGE_FILE_HEADER_BYTES + entry.index * slotBytes,
          data: data.subarray(i * slotBytes),
          entries: [entry],
        });
      }
    });
    const bytes = entries.length * PAGE_SIZE_BYTES;
    this.queuedBytes += bytes;
    this.queue = this.queue.then(async () => {
      try {
        if (this.failure === undefined) {
          for (const run of runs) {
            await this.handle.write(run.data, 0, run.entries.length * slotBytes, run.offset);
            for (const e of run.entries) this.writtenVersions[e.index] = e.version;
          }
        }
      } catch (err) {
        this.failure ??= err;
      } finally {
        this.queuedBytes -= bytes;
      }
    });
  }

  /** Resolves once at most `maxPendingBytes` of queued writes are not yet written. */
  async waitForWrites(maxPendingBytes: number): Promise<void> {
    while (this.queuedBytes > maxPendingBytes) await this.queue;
  }

  /**
   * Resolves once every write queued before this call is in the file and fdatasync'ed; returns
   * the synced versions. Writes queued later go on while the fdatasync runs.
   */
  async sync(): Promise<Uint32Array> {
    const file = path.join(this.dir, PAGES_FILE);
    await this.queue;
    try {
      if (this.failure !== undefined) throw this.failure;
      const versions = this.writtenVersions.slice();
      await this.handle.datasync();
      for (let i = 0; i < versions.length; i += 1) {
        const v = versions[i] as number;
        if (v > (this.syncedVersions[i] as number)) this.syncedVersions[i] = v;
      }
      return this.syncedVersions;
    } catch (err) {
      throw new PageStoreError('page file write or sync failed', {
        migrationId: this.header.migrationId,
        path: file,
        cause: err,
      });
    }
  }

  /** Durably writes `manifest` (see durable-file.ts). */
  async writeManifest(manifest: Manifest): Promise<void> {
    const name = manifest.final ? 'manifest-final.bin' : `manifest-${String(manifest.round).padStart(5, '0')}.bin`;
    const target = path.join(this.dir, name);
    try {
      await writeFileDurably(target, encodeManifest(manifest));
    } catch (err) {
      throw new PageStoreError('cannot write manifest', {
        migrationId: this.header.migrationId,
        path: target,
        cause: err,
      });
    }
  }

  /** Durably records that every page of the final manifest is in the file at its final version. */
  async markComplete(): Promise<void> {
    const target = path.join(this.dir, 'complete');
    try {
      await writeFileDurably(target, new Date().toISOString());
    } catch (err) {
      throw new PageStoreError('cannot mark the page file complete', {
        migrationId: this.header.migrationId,
        path: target,
        cause: err,
      });
    }
  }

  /** Waits up to `timeoutMs` for the source's completion mark; resolves whether it appeared. */
  async waitForComplete(timeoutMs: number, pollMs = 20): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await fs.access(path.join(this.dir, 'complete'));
        return true;
      } catch {
        if (Date.now() >= deadline) return false;
        await new Promise((r) => setTimeout(r, pollMs));
      }
    }
  }

  /** The final manifest if the source has written it, else undefined. */
  async readFinalManifest(): Promise<Manifest | undefined> {
    const file = path.join(this.dir, 'manifest-final.bin');
    try {
      return decodeManifest(await fs.readFile(file));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new PageStoreError('cannot read final manifest', {
        migrationId: this.header.migrationId,
        path: file,
        cause: err,
      });
    }
  }

  /** Reads page `index` into `target` (4 KiB). */
  readPage(index: number, target: Buffer): Promise<void> {
    return this.readPages(index, 1, target);
  }

  /**
   * Reads `count` consecutive pages from page `firstIndex` into `target` in one read (`count` × 4 KiB),
   * opening them if the file is sealed.
   */
  async readPages(firstIndex: number, count: number, target: Buffer): Promise<void> {
    const bytes = count * this.slotBytes;
    const offset = PAGE_FILE_HEADER_BYTES + firstIndex * this.slotBytes;
    const into = this.sealer ? Buffer.allocUnsafe(bytes) : target;
    const { bytesRead } = await this.handle.read(into, 0, bytes, offset);
    if (bytesRead !== bytes) {
      throw new PageStoreError(`short read of pages ${firstIndex}..${firstIndex + count - 1}`, {
        migrationId: this.header.migrationId,
        path: path.join(this.dir, PAGES_FILE),
      });
    }
    this.sealer?.openAll(firstIndex, count, into, target);
  }

  /** Marks as synced what the round manifests on disk say (used when reopening after a crash). */
  private async loadManifests(): Promise<void> {
    const names = (await fs.readdir(this.dir)).filter((n) => /^manifest-.*\.bin$/.test(n)).sort();
    for (const name of names) {
      const manifest = decodeManifest(await fs.readFile(path.join(this.dir, name)));
      manifest.indexes.forEach((index, i) => {
        const v = manifest.versions[i] as number;
        if (v > (this.syncedVersions[index] as number)) this.syncedVersions[index] = v;
        if (v > (this.writtenVersions[index] as number)) this.writtenVersions[index] = v;
      });
    }
  }

  /** Closes the file handle; queued writes are finished first. */
  async close(): Promise<void> {
    await this.queue;
    await this.handle.close();
  }
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The header of the open file `handle`, checked (see decodePageFileHeader). */
async function readHeader(handle: fs.FileHandle, file: string, migrationId: string): Promise<PageFileHeader> {
  const buf = Buffer.alloc(PAGE_FILE_HEADER_BYTES);
  const { bytesRead } = await handle.read(buf, 0, PAGE_FILE_HEADER_BYTES, 0);
  const { size } = await handle.stat();
  return decodePageFileHeader(buf.subarray(0, bytesRead), file, migrationId, size);
}

/** Throws PageFileHeaderError unless the file found holds what the writer is about to write. */
function assertSameFile(found: PageFileHeader, wanted: PageFileHeader, file: string): void {
  if (found.vmId !== wanted.vmId || found.pageCount !== wanted.pageCount)
    throw new PageFileHeaderError(
      file,
      `it holds ${found.pageCount} pages of VM ${found.vmId}, this writer ${wanted.pageCount} of VM ${wanted.vmId}`,
    );
  if (found.sealed !== wanted.sealed)
    throw new PageFileHeaderError(
      file,
      found.sealed === true
        ? 'it is sealed at rest, and this migration does not encrypt'
        : 'it holds clear pages, and this migration encrypts them',
    );
}

/** The sealer of a sealed file; throws PageFileHeaderError if there is no key to open it. */
function sealerFor(header: PageFileHeader, key: PageFileKey, file: string): PageSealer | undefined {
  if (header.sealed !== true) return undefined;
  if (!key.migrationKey) throw new PageFileHeaderError(file, 'it is sealed at rest, and no migration key was given');
  return new PageSealer(key.migrationKey, header.migrationId);
}

/**
 * Deletes the migration's files from the store (idempotent): only the names the store writes
 * there, one by one, then the emptied folders. Nothing is removed recursively, so a folder that
 * holds anything else (a mistaken store, a foreign file) keeps it and stays.
 */
export async function removeMigrationFiles(storeDir: string, migrationId: string): Promise<void> {
  const dir = migrationDir(storeDir, migrationId);
  const control = path.join(dir, 'control');
  await removeKnownFiles(control, MESSAGE_FILE);
  await removeEmptyDir(control);
  await removeKnownFiles(dir, MIGRATION_FILE);
  await removeEmptyDir(dir);
}

async function removeKnownFiles(dir: string, known: RegExp): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const name of names) if (known.test(name)) await fs.rm(path.join(dir, name), { force: true });
}

async function removeEmptyDir(dir: string): Promise<void> {
  await fs.rmdir(dir).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  });
}
