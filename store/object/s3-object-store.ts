/**
 * The object store on S3 (AWS, SeaweedFS, MinIO) through @aws-sdk/client-s3: keys under `prefix`
 * in one bucket, which must exist. The client is given endpoint, region and static credentials
 * and reads nothing else: with static credentials the SDK never builds its default provider
 * chain, and `defaultsMode: 'standard'` stops it from asking instance metadata for a region.
 *
 * Checksums: every PUT carries a CRC32 that the server checks (BadDigest otherwise) and the SDK
 * checks whole-object GETs against the stored one. CRC32 rather than CRC32C because Node has
 * CRC32 natively (zlib, ~5 GB/s here) while the SDK's CRC32C is pure JS (~0.4 GB/s); for objects
 * of a few MiB both catch the same corruption. `checksumAlgorithm: 'CRC32C'` switches.
 *
 * Retries: the SDK's own are off; withRetries retries 5xx, refused or reset connections and
 * timeouts, never a 4xx. A conditional put retried after such a failure that is then refused
 * reads the object: if it holds exactly our bytes, the earlier attempt landed and the put won.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { GetOptions, ObjectInfo, ObjectStore, PutOptions, ResolvedRetryOptions } from './object-store';
import type { RetryOptions, StoredObject } from './object-store';
import { assertValidKey, assertValidRange, resolveRetryOptions, withRetries } from './object-store';
import {
  BucketNotFoundError,
  ObjectStoreError,
  PreconditionFailedError,
  StoreAccessDeniedError,
  StoreUnreachableError,
} from './object-store-errors';

/** Connect timeout per attempt (ms). */
export const DEFAULT_S3_CONNECT_TIMEOUT_MS = 3_000;
/** Timeout of one request and its response (ms). */
export const DEFAULT_S3_REQUEST_TIMEOUT_MS = 30_000;

/** Where the objects are and how to sign for them; the first four are required. */
export interface S3ObjectStoreOptions {
  endpoint: string;
  bucket: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Folder in the bucket for every key, e.g. `ferry/`; default none. */
  prefix?: string;
  /** Default 'CRC32' (see the header). */
  checksumAlgorithm?: 'CRC32' | 'CRC32C';
  retry?: RetryOptions;
  /** Default DEFAULT_S3_CONNECT_TIMEOUT_MS. */
  connectTimeoutMs?: number;
  /** Default DEFAULT_S3_REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
}

type SdkError = { name?: string; code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
type Condition = 'ifNoneMatch' | 'ifMatch' | undefined;
const statusOf = (error: unknown): number | undefined => (error as SdkError).$metadata?.httpStatusCode;
// Matched in the message too: under Jest the SDK wraps Node's errors (another realm) into a new
// Error whose message is all that is left of them ("AWS SDK error wrapper for Error: connect ECONNREFUSED").
const NETWORK_FAILURE = /\b(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ECONNABORTED|EAI_AGAIN|TimeoutError)\b/;

function isTransient(error: unknown): boolean {
  const status = statusOf(error);
  if (status !== undefined) return status >= 500;
  const { name, code, message } = error as SdkError;
  return NETWORK_FAILURE.test(`${name} ${code} ${message}`);
}

function describe(error: unknown): string {
  const { name, message = '', code } = error as SdkError;
  const label = code ?? name;
  const parts = [statusOf(error), label !== undefined && message.includes(label) ? undefined : label, message];
  return parts.filter((part) => part !== undefined && part !== '').join(' ');
}

/** `undefined` for a missing key (NoSuchKey, or a HEAD's bare 404); other errors pass. */
function orMissing<T>(request: Promise<T>): Promise<T | undefined> {
  return request.catch((error: unknown) => {
    if (statusOf(error) === 404 && (error as SdkError).name !== 'NoSuchBucket') return undefined;
    throw error;
  });
}

/** The S3 adapter; `close()` it when done. */
export class S3ObjectStore implements ObjectStore {
  readonly location: string;
  private readonly client: S3Client;
  private readonly endpoint: string;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly accessKeyId: string;
  private readonly checksumAlgorithm: 'CRC32' | 'CRC32C';
  private readonly retry: ResolvedRetryOptions;

  /** Throws on a malformed prefix or retry option; contacts nobody. */
  constructor(options: S3ObjectStoreOptions) {
    const { bucket, region, credentials } = options;
    this.endpoint = options.endpoint.replace(/\/+$/, '');
    this.bucket = bucket;
    this.prefix = (options.prefix ?? '').replace(/\/*$/, '/').replace(/^\/$/, '');
    assertValidKey(this.prefix, true);
    this.location = `s3://${bucket}/${this.prefix} at ${this.endpoint}`;
    this.accessKeyId = credentials.accessKeyId;
    this.checksumAlgorithm = options.checksumAlgorithm ?? 'CRC32';
    this.retry = resolveRetryOptions(options.retry);
    const { accessKeyId, secretAccessKey } = credentials;
    this.client = new S3Client({
      ...{ endpoint: this.endpoint, region, credentials: { accessKeyId, secretAccessKey }, forcePathStyle: true },
      ...{ defaultsMode: 'standard', maxAttempts: 1 },
      ...{ requestChecksumCalculation: 'WHEN_SUPPORTED', responseChecksumValidation: 'WHEN_SUPPORTED' },
      requestHandler: {
        connectionTimeout: options.connectTimeoutMs ?? DEFAULT_S3_CONNECT_TIMEOUT_MS,
        requestTimeout: options.requestTimeoutMs ?? DEFAULT_S3_REQUEST_TIMEOUT_MS,
        throwOnRequestTimeout: true,
      },
    });
  }

  async put(key: string, body: Uint8Array, options: PutOptions = {}): Promise<{ etag: string }> {
    const { ifNoneMatch, ifMatch } = options;
    if (ifNoneMatch !== undefined && ifMatch !== undefined)
      throw new Error('put takes ifNoneMatch or ifMatch, not both');
    const input = { ...this.at(key), Body: body, IfNoneMatch: ifNoneMatch, IfMatch: ifMatch };
    let attempts = 0;
    try {
      const condition = ifNoneMatch !== undefined ? 'ifNoneMatch' : ifMatch !== undefined ? 'ifMatch' : undefined;
      return await this.call('put', key, condition, async () => {
        attempts += 1;
        const out = await this.client.send(
          new PutObjectCommand({ ...input, ChecksumAlgorithm: this.checksumAlgorithm }),
        );
        return { etag: out.ETag ?? '' };
      });
    } catch (error) {
      if (!(error instanceof PreconditionFailedError) || attempts === 1) throw error;
      const landed = await this.get(key);
      if (landed === undefined || !landed.body.equals(body)) throw error;
      return { etag: landed.etag };
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<StoredObject | undefined> {
    const { range } = options;
    if (range !== undefined) assertValidRange(range);
    const Range = range && `bytes=${range.offset}-${range.offset + range.length - 1}`;
    return this.call('get', key, undefined, async () => {
      const out = await orMissing(this.client.send(new GetObjectCommand({ ...this.at(key), Range }))).catch(
        async (error: unknown) => {
          if (statusOf(error) !== 416) throw error;
          const info = await this.head(key);
          return info && { Body: undefined, ETag: info.etag, ContentRange: `bytes */${info.size}` };
        },
      );
      if (out === undefined) return undefined;
      const body = Buffer.from((await out.Body?.transformToByteArray()) ?? []);
      const size = range === undefined ? body.length : Number(out.ContentRange?.split('/')[1]);
      return { body, etag: out.ETag ?? '', size };
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const out = await this.call('head', key, undefined, () =>
      orMissing(this.client.send(new HeadObjectCommand(this.at(key)))),
    );
    // A HEAD has no body, so a missing bucket is a bare 404 too: ask the bucket before saying "missing".
    if (out === undefined)
      await this.call('head', key, undefined, () => this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
    return out && { etag: out.ETag ?? '', size: out.ContentLength ?? 0 };
  }

  async list(prefix = ''): Promise<string[]> {
    assertValidKey(prefix, true);
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const input = { Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token };
      const page = await this.call('list', prefix, undefined, () => this.client.send(new ListObjectsV2Command(input)));
      for (const item of page.Contents ?? []) keys.push((item.Key ?? '').slice(this.prefix.length));
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    await this.call('delete', key, undefined, () => this.client.send(new DeleteObjectCommand(this.at(key))));
  }

  /** Closes the client's sockets. */
  close(): void {
    this.client.destroy();
  }

  /** Bucket and full key of `key`, which is validated. */
  private at(key: string): { Bucket: string; Key: string } {
    assertValidKey(key);
    return { Bucket: this.bucket, Key: this.prefix + key };
  }

  /** Runs one request with retries and turns its final failure into one of object-store-errors.ts. */
  private async call<T>(operation: string, key: string, condition: Condition, request: () => Promise<T>): Promise<T> {
    const startedAt = Date.now();
    let attempts = 0;
    try {
      return await withRetries(() => request().finally(() => (attempts += 1)), isTransient, this.retry);
    } catch (error) {
      const status = statusOf(error);
      const ref = { endpoint: this.endpoint, bucket: this.bucket, key };
      const cause = { cause: error };
      // AWS answers If-Match on a missing key with 404 NoSuchKey, SeaweedFS with 412; both mean refused.
      const refused = status === 412 || status === 409 || (condition === 'ifMatch' && status === 404);
      if (condition !== undefined && refused && (error as SdkError).name !== 'NoSuchBucket') {
        throw new PreconditionFailedError({ store: this.location, key }, condition, cause);
      }
      if ((error as SdkError).name === 'NoSuchBucket' || (operation === 'head' && status === 404)) {
        throw new BucketNotFoundError(this.bucket, this.endpoint, key, cause);
      }
      if (status === 403)
        throw new StoreAccessDeniedError({ ...ref, accessKeyId: this.accessKeyId }, describe(error), cause);
      if (isTransient(error))
        throw new StoreUnreachableError(ref, attempts, Date.now() - startedAt, describe(error), cause);
      throw new ObjectStoreError(operation, { store: this.location, key }, describe(error), cause);
    }
  }
}
