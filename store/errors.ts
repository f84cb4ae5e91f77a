/** Errors of the shared page store. */

/** A read or write on the shared store failed; `path` names the file, `cause` the OS error. */
export class PageStoreError extends Error {
  override readonly name = 'PageStoreError';
  readonly migrationId: string;
  readonly path: string;

  constructor(message: string, opts: { migrationId: string; path: string; cause?: unknown }) {
    super(`${message} [migration=${opts.migrationId}, path=${opts.path}]`, { cause: opts.cause });
    this.migrationId = opts.migrationId;
    this.path = opts.path;
  }
}

/** The store (a directory, or a bucket and prefix) does not exist or cannot be written. */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
  readonly storeDir: string;

  constructor(storeDir: string, cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(`shared store ${storeDir} is not writable: ${reason}`, { cause });
    this.storeDir = storeDir;
  }
}

/** A manifest read from the store is malformed: bad magic, format, length, checksum or page table. */
export class ManifestFormatError extends Error {
  override readonly name = 'ManifestFormatError';

  constructor(detail: string, opts?: { cause?: unknown }) {
    super(detail, opts);
  }
}
