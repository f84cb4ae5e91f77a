/**
 * How the chunk uploads of an object page file fare: which failures are worth retrying, the
 * outages they add up to, and how long to wait before the next attempt. An outage runs from the
 * start of the first upload that failed for a transient reason to the end of the first upload that
 * started after it and succeeded, so "the store was unreachable from T1 to T2" can be reported as an
 * incident while the uploads go on.
 */
import type { StoreHealth, StoreOutage } from '../page-store';

/** First wait after a transient failure (ms); it doubles with each further one. */
export const UPLOAD_RETRY_INITIAL_DELAY_MS = 50;
/** Longest wait between two attempts during an outage (ms). */
export const UPLOAD_RETRY_MAX_DELAY_MS = 1_000;

export type { StoreHealth, StoreOutage } from '../page-store';
type StoreFailure = NonNullable<StoreHealth['failure']>;

/** errno codes of a shared filesystem (the directory adapter) that may pass by themselves. */
const TRANSIENT_ERRNO = new Set(['EIO', 'ETIMEDOUT', 'ESTALE', 'EAGAIN', 'EBUSY', 'ECONNRESET', 'EINTR']);

/**
 * True if an upload that failed with `error` may succeed later: the endpoint did not answer
 * through the adapter's own retries (StoreUnreachableError), the server failed (5xx), or a shared
 * filesystem hiccupped. A missing bucket, refused credentials and every other 4xx are permanent.
 * Errors are recognised by name (under Jest, classes may come from another copy of the module).
 */
export function isTransientStoreFailure(error: unknown): boolean {
  const { name, cause } = error as { name?: string; cause?: unknown };
  if (name === 'StoreUnreachableError') return true;
  if (name !== 'ObjectStoreError') return false;
  const detail = cause as { $metadata?: { httpStatusCode?: number }; code?: string } | undefined;
  const status = detail?.$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500;
  return TRANSIENT_ERRNO.has(detail?.code ?? '');
}

/** The message of `error`, for a record. */
export function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Outages and the backoff of one page file's uploads. */
export class UploadHealth {
  private readonly outages: StoreOutage[] = [];
  private failure: StoreFailure | undefined;
  private delayMs = 0;

  /** The outage under way, if any. */
  get openOutage(): StoreOutage | undefined {
    const last = this.outages[this.outages.length - 1];
    return last && last.to === undefined ? last : undefined;
  }

  /** Records a transient failure of an upload started at `startedAt`; returns how long to wait (ms). */
  noteTransientFailure(startedAt: number, error: unknown): number {
    const open = this.openOutage;
    if (open) {
      open.failedUploads += 1;
      open.reason = reasonOf(error);
    } else {
      this.outages.push({ from: startedAt, reason: reasonOf(error), failedUploads: 1 });
    }
    this.delayMs = Math.min(UPLOAD_RETRY_MAX_DELAY_MS, Math.max(UPLOAD_RETRY_INITIAL_DELAY_MS, this.delayMs * 2));
    return this.delayMs;
  }

  /** Records a successful upload started at `startedAt`; it ends an outage it started after. */
  noteSuccess(startedAt: number): void {
    const open = this.openOutage;
    if (open && startedAt >= open.from) {
      open.to = Date.now();
      this.delayMs = 0;
    }
  }

  /** Records the permanent failure of the upload of `key`. */
  noteFailure(key: string, error: unknown): void {
    this.failure ??= { at: Date.now(), key, reason: reasonOf(error) };
  }

  /** A copy of the record. */
  snapshot(): StoreHealth {
    const outages = this.outages.map((outage) => ({ ...outage }));
    return this.failure ? { outages, failure: { ...this.failure } } : { outages };
  }
}
