/**
 * Errors of the object store (object-store.ts) and its adapters. Each names the store (`s3://bucket/prefix
 * at endpoint`, or the directory) and the key, and carries the low-level error as `cause`.
 */

/** Where a failure happened: the store's `location` and the key (or list prefix), if any. */
export interface ObjectRef {
  store: string;
  key?: string | undefined;
}

function where(ref: ObjectRef): string {
  return ref.key === undefined ? `store=${ref.store}` : `store=${ref.store}, key=${ref.key}`;
}

/** A read, write, list or delete failed for a reason of its own; `operation` is the method, `cause` the error. */
export class ObjectStoreError extends Error {
  override readonly name = 'ObjectStoreError';
  readonly store: string;
  readonly key: string | undefined;
  readonly operation: string;

  constructor(operation: string, ref: ObjectRef, reason: string, opts: { cause?: unknown } = {}) {
    super(`object ${operation} failed [${where(ref)}]: ${reason}`, { cause: opts.cause });
    this.store = ref.store;
    this.key = ref.key;
    this.operation = operation;
  }
}

/**
 * A conditional put was refused: with `ifNoneMatch` the key exists, with `ifMatch` the object is
 * missing or no longer has that etag. Nothing was written; read the object again to learn who won.
 */
export class PreconditionFailedError extends Error {
  override readonly name = 'PreconditionFailedError';
  readonly store: string;
  readonly key: string;
  readonly condition: 'ifNoneMatch' | 'ifMatch';

  constructor(ref: ObjectRef & { key: string }, condition: 'ifNoneMatch' | 'ifMatch', opts: { cause?: unknown } = {}) {
    const why = condition === 'ifNoneMatch' ? 'the key already exists' : 'the object is gone or has another etag';
    super(`conditional put refused [${where(ref)}]: ${why} (${condition})`, { cause: opts.cause });
    this.store = ref.store;
    this.key = ref.key;
    this.condition = condition;
  }
}

/** The bucket does not exist at the endpoint; ferry never creates buckets. */
export class BucketNotFoundError extends Error {
  override readonly name = 'BucketNotFoundError';
  readonly bucket: string;
  readonly endpoint: string;
  readonly key: string | undefined;

  constructor(bucket: string, endpoint: string, key: string | undefined, opts: { cause?: unknown } = {}) {
    super(
      `bucket ${bucket} does not exist at ${endpoint}${key === undefined ? '' : ` (key=${key})`}: ` +
        'create it, or configure a bucket that exists',
      { cause: opts.cause },
    );
    this.bucket = bucket;
    this.endpoint = endpoint;
    this.key = key;
  }
}

/** The endpoint refused the credentials or their rights on the bucket (HTTP 403). */
export class StoreAccessDeniedError extends Error {
  override readonly name = 'StoreAccessDeniedError';
  readonly endpoint: string;
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly key: string | undefined;

  constructor(
    ref: { endpoint: string; bucket: string; accessKeyId: string; key?: string | undefined },
    code: string,
    opts: { cause?: unknown } = {},
  ) {
    super(
      `S3 access denied [endpoint=${ref.endpoint}, bucket=${ref.bucket}, accessKeyId=${ref.accessKeyId}` +
        `${ref.key === undefined ? '' : `, key=${ref.key}`}]: ${code.replace(/\.$/, '')}; ` +
        'check FERRY_S3_ACCESS_KEY_ID and FERRY_S3_SECRET_ACCESS_KEY',
      { cause: opts.cause },
    );
    this.endpoint = ref.endpoint;
    this.bucket = ref.bucket;
    this.accessKeyId = ref.accessKeyId;
    this.key = ref.key;
  }
}

/** The endpoint did not answer (refused, reset, timed out, or kept failing with 5xx) through every retry. */
export class StoreUnreachableError extends Error {
  override readonly name = 'StoreUnreachableError';
  readonly endpoint: string;
  readonly bucket: string;
  readonly key: string | undefined;
  readonly attempts: number;
  readonly elapsedMs: number;

  constructor(
    ref: { endpoint: string; bucket: string; key?: string | undefined },
    attempts: number,
    elapsedMs: number,
    reason: string,
    opts: { cause?: unknown } = {},
  ) {
    super(
      `S3 endpoint unreachable [endpoint=${ref.endpoint}, bucket=${ref.bucket}` +
        `${ref.key === undefined ? '' : `, key=${ref.key}`}]: ${reason}, ${attempts} attempts in ` +
        `${(elapsedMs / 1000).toFixed(1)} s; is the server up and FERRY_S3_ENDPOINT right?`,
      { cause: opts.cause },
    );
    this.endpoint = ref.endpoint;
    this.bucket = ref.bucket;
    this.key = ref.key;
    this.attempts = attempts;
    this.elapsedMs = elapsedMs;
  }
}
