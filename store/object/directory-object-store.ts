/**
 * The object store on a directory (a local disk, or NFS/EFS shared by the hosts), so that logic
 * above the interface runs on both adapters. Object `a/b` is the file `<dir>/a/b`: a 48-byte
 * header holding the MD5 of the body (the etag, as S3 makes it for a single PUT), then the body,
 * so head and range reads never hash. The directory itself must exist, as a bucket must.
 *
 * Semantics: a put writes its file aside and fdatasyncs it, then puts it in place and fsyncs the
 * folder, so a reader sees the old object or the whole new one and a returned put is durable.
 * With ifNoneMatch '*' it is link()ed into place, which fails if the name exists: of many
 * creators exactly one wins, with no lock. A put that replaces, and a delete, hold the key's lock
 * (`.<name>.lock`, created O_EXCL) across compare-and-rename, which makes ifMatch a
 * compare-and-swap. Only the rename happens under the lock, so a lock older than
 * STALE_LOCK_MS was left by a dead process and is broken. Names starting with '.' are the
 * store's own. Objects are files of mode 0600 in folders created 0700. A key cannot be both an
 * object and a folder of other keys (S3 allows that), and a delete leaves the emptied folders behind.
 */
import { createHash, randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { GetOptions, ObjectInfo, ObjectStore, PutOptions, StoredObject } from './object-store';
import { assertValidKey, assertValidRange } from './object-store';
import { ObjectStoreError, PreconditionFailedError } from './object-store-errors';
import { makePrivateDir, PRIVATE_FILE_MODE } from '../safe-path';
import { syncDir } from '../durable-file';

/** Age after which a key's lock is taken to be left by a dead process and removed (ms). */
export const STALE_LOCK_MS = 30_000;
/** How long a put or delete waits for a key's lock held by another writer (ms). */
export const DEFAULT_LOCK_WAIT_MS = 10_000;

const HEADER_BYTES = 48;
const HEADER_PATTERN = /^ferry-object 1 ([0-9a-f]{32})\n$/;

const errnoOf = (error: unknown): string | undefined => (error as NodeJS.ErrnoException).code;
const unquote = (etag: string): string => etag.replace(/^"|"$/g, '');

/** The directory adapter. */
export class DirectoryObjectStore implements ObjectStore {
  readonly location: string;

  /**
   * `dir` must exist when objects are written; nothing is checked until then. A put or delete
   * waits up to `lockWaitMs` for the key's lock (default DEFAULT_LOCK_WAIT_MS).
   */
  constructor(
    private readonly dir: string,
    private readonly lockWaitMs = DEFAULT_LOCK_WAIT_MS,
  ) {
    this.location = path.resolve(dir);
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<{ etag: string }> {
    const file = this.fileOf(key);
    const { ifNoneMatch, ifMatch } = options;
    if (ifNoneMatch !== undefined && ifMatch !== undefined)
      throw new Error('put takes ifNoneMatch or ifMatch, not both');
    const md5 = createHash('md5').update(body).digest('hex');
    const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomUUID()}.tmp`);
    try {
      await this.writeAside(tmp, md5, body);
      if (ifNoneMatch === '*') {
        await fs.link(tmp, file).catch((error: unknown) => {
          if (errnoOf(error) === 'EEXIST')
            throw new PreconditionFailedError({ store: this.location, key }, 'ifNoneMatch');
          throw error;
        });
      } else {
        await this.withLock(file, async () => {
          if (ifMatch !== undefined && unquote((await this.head(key))?.etag ?? '') !== unquote(ifMatch)) {
            throw new PreconditionFailedError({ store: this.location, key }, 'ifMatch');
          }
          await fs.rename(tmp, file);
        });
      }
      await syncDir(path.dirname(file));
      return { etag: `"${md5}"` };
    } catch (error) {
      throw this.wrap('put', key, error);
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | undefined> {
    const { range } = options;
    if (range !== undefined) assertValidRange(range);
    return this.read('get', key, async (handle, info) => {
      const start = Math.min(range?.offset ?? 0, info.size);
      const end = range === undefined ? info.size : Math.min(range.offset + range.length, info.size);
      const body = Buffer.alloc(end - start);
      const { bytesRead } = await handle.read(body, 0, body.length, HEADER_BYTES + start);
      if (bytesRead !== body.length) throw new Error(`read ${bytesRead} of ${body.length} bytes: file shrank`);
      return { ...info, body };
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    return this.read('head', key, async (_handle, info) => info);
  }

  async list(prefix = ''): Promise<string[]> {
    assertValidKey(prefix, true);
    const keys: string[] = [];
    const walk = async (folder: string): Promise<void> => {
      const entries = await fs.readdir(path.join(this.dir, folder), { withFileTypes: true }).catch((error: unknown) => {
        if (errnoOf(error) === 'ENOENT') return [];
        throw this.wrap('list', prefix, error);
      });
      for (const entry of entries) {
        const name = folder + entry.name;
        if (entry.name.startsWith('.')) continue;
        if (entry.isDirectory() && (`${name}/`.startsWith(prefix) || prefix.startsWith(`${name}/`)))
          await walk(`${name}/`);
        else if (entry.isFile() && name.startsWith(prefix)) keys.push(name);
      }
    };
    await walk(prefix.slice(0, prefix.lastIndexOf('/') + 1));
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    const file = this.fileOf(key);
    try {
      await this.withLock(file, () => fs.rm(file, { force: true }));
      await syncDir(path.dirname(file));
    } catch (error) {
      // No folder, no object: the lock could not even be created.
      if (errnoOf(error) !== 'ENOENT') throw this.wrap('delete', key, error);
    }
  }

  private fileOf(key: string): string {
    assertValidKey(key);
    return path.join(this.dir, key);
  }

  private async writeAside(tmp: string, md5: string, body: Uint8Array): Promise<void> {
    await fs.stat(this.dir).catch((error: unknown) => {
      throw new Error(`the store directory does not exist or cannot be reached (${errnoOf(error)})`, { cause: error });
    });
    await makePrivateDir(path.dirname(tmp));
    const handle = await fs.open(tmp, 'wx', PRIVATE_FILE_MODE);
    try {
      await handle.chmod(PRIVATE_FILE_MODE);
      await handle.writev([Buffer.from(`ferry-object 1 ${md5}\n`), body]);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  /** Opens the object's file and reads its header; undefined if there is none. */
  private async read<T>(
    operation: string,
    key: string,
    use: (handle: fs.FileHandle, info: ObjectInfo) => Promise<T>,
  ): Promise<T | undefined> {
    const file = this.fileOf(key);
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(file, 'r');
    } catch (error) {
      if (errnoOf(error) === 'ENOENT' || errnoOf(error) === 'ENOTDIR') return undefined;
      throw this.wrap(operation, key, error);
    }
    try {
      const header = Buffer.alloc(HEADER_BYTES);
      await handle.read(header, 0, HEADER_BYTES, 0);
      const md5 = HEADER_PATTERN.exec(header.toString('latin1'))?.[1];
      if (md5 === undefined) throw new Error(`${file} is not an object file: its header is missing or damaged`);
      return await use(handle, { etag: `"${md5}"`, size: (await handle.stat()).size - HEADER_BYTES });
    } catch (error) {
      throw this.wrap(operation, key, error);
    } finally {
      await handle.close();
    }
  }

  /** Runs `critical` holding the key's lock file; breaks a stale lock, gives up after lockWaitMs. */
  private async withLock<T>(file: string, critical: () => Promise<T>): Promise<T> {
    const lock = path.join(path.dirname(file), `.${path.basename(file)}.lock`);
    const deadline = Date.now() + this.lockWaitMs;
    for (let delayMs = 1; ; delayMs = Math.min(2 * delayMs, 50)) {
      try {
        await (await fs.open(lock, 'wx')).close();
        break;
      } catch (error) {
        if (errnoOf(error) !== 'EEXIST') throw error;
        const since = (await fs.stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now();
        if (Date.now() - since > STALE_LOCK_MS) await fs.rm(lock, { force: true });
        else if (Date.now() > deadline) {
          throw new Error(`its lock ${lock} has been held for ${Date.now() - since} ms`, { cause: error });
        } else await new Promise((resolve) => setTimeout(resolve, delayMs));
      }
    }
    try {
      return await critical();
    } finally {
      await fs.rm(lock, { force: true });
    }
  }

  private wrap(operation: string, key: string, error: unknown): Error {
    if (error instanceof PreconditionFailedError || error instanceof ObjectStoreError) return error;
    const reason = error instanceof Error ? error.message : String(error);
    return new ObjectStoreError(operation, { store: this.location, key }, reason, { cause: error });
  }
}
