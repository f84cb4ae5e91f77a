/**
 * The narrow object store that the page store is built on, after the Temporal SDK's S3 external
 * storage: five methods on whole objects under string keys, with conditional writes. Key layout,
 * chunking, manifests and ownership live above it; adapters (s3-object-store.ts,
 * directory-object-store.ts) only move bytes and map their backend's answers onto these meanings:
 *
 * - a missing object is `undefined` (get, head), never an error; delete of a missing key succeeds;
 * - a refused condition is PreconditionFailedError, and nothing was written;
 * - every other failure is one of object-store-errors.ts, naming the store and the key.
 *
 * An etag is opaque: compare it only with another etag of the same key and store.
 */

/** Conditions of a put; at most one may be given. */
export interface PutOptions {
  /** `'*'`: create only; refused if the key exists (S3 If-None-Match). */
  ifNoneMatch?: '*';
  /** Replace only the object that has this etag; refused if it is missing or changed (S3 If-Match). */
  ifMatch?: string;
}

/** A byte range of an object. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** Reading options. */
export interface GetOptions {
  /** Only these bytes; cut at the end of the object, empty when it starts at or past the end. */
  range?: ByteRange;
}

/** What a head tells about a stored object. */
export interface ObjectInfo {
  etag: string;
  /** Size of the whole object (bytes), also when only a range was read. */
  size: number;
}

/** An object read by get: its bytes (or the range asked for) and what head would tell. */
export interface StoredObject extends ObjectInfo {
  body: Buffer;
}

/** Objects under string keys (`a-z A-Z 0-9 . _ - =`, segments joined by '/'). */
export interface ObjectStore {
  /** Where the objects are, for messages: `s3://bucket/prefix at endpoint`, or a directory. */
  readonly location: string;
  /** Stores `body` durably under `key`; returns the new etag. Throws PreconditionFailedError. */
  put(key: string, body: Uint8Array, options?: PutOptions): Promise<{ etag: string }>;
  /** The object (or a range of it), undefined if missing. */
  get(key: string, options?: GetOptions): Promise<StoredObject | undefined>;
  /** Etag and size, undefined if missing. */
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every key that starts with `prefix` (default all), sorted. */
  list(prefix?: string): Promise<string[]>;
  /** Removes the object; a missing one is success. */
  delete(key: string): Promise<void>;
}

/** Longest key accepted (characters); S3's limit is 1024 bytes, with room left for a prefix. */
export const MAX_OBJECT_KEY_LENGTH = 512;
const KEY_PATTERN = /^[A-Za-z0-9_=-][A-Za-z0-9._=-]*(\/[A-Za-z0-9_=-][A-Za-z0-9._=-]*)*$/;

/**
 * Throws unless `key` is a valid key (or, with `asPrefix`, a key with an optional trailing '/', or
 * ''). No segment may start with '.': the directory adapter keeps its temp and lock files there.
 */
export function assertValidKey(key: string, asPrefix = false): void {
  const bare = asPrefix ? key.replace(/\/$/, '') : key;
  if ((asPrefix && bare === '') || (KEY_PATTERN.test(bare) && key.length <= MAX_OBJECT_KEY_LENGTH)) return;
  throw new Error(
    `object ${asPrefix ? 'prefix' : 'key'} must be '/'-separated segments of A-Z a-z 0-9 . _ - = ` +
      `not starting with '.', at most ${MAX_OBJECT_KEY_LENGTH} characters, got ${JSON.stringify(key)}`,
  );
}

/** Throws unless `range` has an integer offset ≥ 0 and length ≥ 1 (S3 ignores a malformed Range). */
export function assertValidRange(range: ByteRange): void {
  const { offset, length } = range;
  if (Number.isInteger(offset) && offset >= 0 && Number.isInteger(length) && length >= 1) return;
  throw new Error(`range must have an integer offset >= 0 and length >= 1, got ${JSON.stringify(range)}`);
}

/** First delay between attempts (ms); it doubles each time. */
export const DEFAULT_RETRY_INITIAL_DELAY_MS = 50;
/** Longest delay between attempts (ms). */
export const DEFAULT_RETRY_MAX_DELAY_MS = 1_000;
/** How long a call keeps retrying a transient failure (ms); a SeaweedFS restart takes about 3 s. */
export const DEFAULT_RETRY_FOR_MS = 20_000;

/** How an adapter retries transient failures; all optional. */
export interface RetryOptions {
  /** Default DEFAULT_RETRY_INITIAL_DELAY_MS. */
  initialDelayMs?: number;
  /** Default DEFAULT_RETRY_MAX_DELAY_MS. */
  maxDelayMs?: number;
  /** No attempt starts after this long (ms); default DEFAULT_RETRY_FOR_MS. 0: a single attempt. */
  retryForMs?: number;
}

/** RetryOptions with every default filled in. */
export type ResolvedRetryOptions = Required<RetryOptions>;

/** Validates `raw` and fills in defaults; throws naming the option and the bad value. */
export function resolveRetryOptions(raw: RetryOptions = {}): ResolvedRetryOptions {
  const resolved = {
    initialDelayMs: raw.initialDelayMs ?? DEFAULT_RETRY_INITIAL_DELAY_MS,
    maxDelayMs: raw.maxDelayMs ?? DEFAULT_RETRY_MAX_DELAY_MS,
    retryForMs: raw.retryForMs ?? DEFAULT_RETRY_FOR_MS,
  };
  for (const [name, value] of Object.entries(resolved)) {
    if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a non-negative integer, got ${value}`);
  }
  return resolved;
}

/**
 * Runs `attempt` (numbered from 1) until it succeeds, or fails with an error `isTransient` rejects,
 * or the next attempt would start later than `retryForMs` after the first; then rethrows the last
 * error unchanged. Delays double from `initialDelayMs` up to `maxDelayMs`, each drawn from its
 * upper half so that parallel callers spread out.
 */
export async function withRetries<T>(
  attempt: (attemptNumber: number) => Promise<T>,
  isTransient: (error: unknown) => boolean,
  options: ResolvedRetryOptions,
): Promise<T> {
  const startedAt = Date.now();
  for (let attemptNumber = 1; ; attemptNumber += 1) {
    try {
      return await attempt(attemptNumber);
    } catch (error) {
      const ceiling = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** (attemptNumber - 1));
      const delayMs = ceiling / 2 + (Math.random() * ceiling) / 2;
      if (!isTransient(error) || Date.now() + delayMs - startedAt > options.retryForMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
