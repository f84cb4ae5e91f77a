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

/** A path derived from an id or an input would leave the folder it must stay under. */
export class PathEscapeError extends Error {
  override readonly name = 'PathEscapeError';
  readonly root: string;
  readonly requested: string;

  constructor(root: string, requested: string, what: string) {
    super(
      `${what} ${JSON.stringify(requested)} would leave ${root}: a name derived from an id must stay under its folder ` +
        "(no '..', '/' or empty segments that climb out)",
    );
    this.root = root;
    this.requested = requested;
  }
}

/**
 * A directory store named by a migration is neither the configured store nor under an allowed
 * root (FERRY_STORE_ROOTS); the message lists the roots.
 */
export class StoreNotAllowedError extends Error {
  override readonly name = 'StoreNotAllowedError';
  readonly storeDir: string;
  readonly allowedRoots: readonly string[];

  constructor(storeDir: string, allowedRoots: readonly string[]) {
    super(
      `store ${storeDir} is not allowed on this host: a directory store must be one of, or under, ` +
        `${allowedRoots.join(', ')} (set FERRY_STORE_ROOTS on the hosts, ':'-separated, to allow others)`,
    );
    this.storeDir = storeDir;
    this.allowedRoots = allowedRoots;
  }
}

/** A page file's header disagrees with what the reader expects: another migration's, or damaged. */
export class PageFileHeaderError extends Error {
  override readonly name = 'PageFileHeaderError';
  readonly path: string;

  constructor(path: string, problem: string) {
    super(`page file ${path} has a bad header: ${problem}`);
    this.path = path;
  }
}

/**
 * The store did not answer a question the caller must not guess at (was the final request posted,
 * did an ownership claim land) within `waitedMs`; `cause` is its last error. Whoever gets it keeps
 * every copy of the VM: its state is unknown until the store answers.
 */
export class StoreUndecidedError extends Error {
  override readonly name = 'StoreUndecidedError';
  readonly question: string;
  readonly waitedMs: number;

  constructor(question: string, waitedMs: number, opts: { cause?: unknown } = {}) {
    const reason = opts.cause instanceof Error ? opts.cause.message : String(opts.cause);
    super(`the store did not answer ${question} within ${waitedMs} ms (last error: ${reason})`, opts);
    this.question = question;
    this.waitedMs = waitedMs;
  }
}

/** A manifest read from the store is malformed: bad magic, format, length, checksum or page table. */
export class ManifestFormatError extends Error {
  override readonly name = 'ManifestFormatError';

  constructor(detail: string, opts?: { cause?: unknown }) {
    super(detail, opts);
  }
}
