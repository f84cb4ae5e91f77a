/**
 * What a user names as the shared store, parsed without I/O (the workflow validates it too): a
 * directory path, or `s3://bucket/prefix`.
 */
import { assertValidKey } from './object/object-store';

/** A store name, parsed. */
export type StoreRef = { kind: 'directory'; dir: string } | { kind: 's3'; bucket: string; prefix: string };

/** S3's bucket naming rules (3–63 characters of a-z 0-9 . -, starting and ending with a letter or digit). */
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Raised for a store name that cannot be used; the message says what is wrong with it. */
export class InvalidStoreRefError extends Error {
  override readonly name = 'InvalidStoreRefError';
}

/** Parses `ref`; throws InvalidStoreRefError naming the problem. */
export function parseStoreRef(ref: string): StoreRef {
  if (typeof ref !== 'string' || ref.trim() === '')
    throw new InvalidStoreRefError(`store must be a directory path or s3://bucket/prefix, got ${JSON.stringify(ref)}`);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(ref)?.[1];
  if (scheme === undefined) return { kind: 'directory', dir: ref };
  if (scheme.toLowerCase() !== 's3')
    throw new InvalidStoreRefError(
      `store ${JSON.stringify(ref)} uses ${scheme}://; only a directory path or s3://bucket/prefix is supported`,
    );
  const rest = ref.slice(scheme.length + 3);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
  if (!BUCKET_NAME.test(bucket) || bucket.includes('..'))
    throw new InvalidStoreRefError(
      `store ${JSON.stringify(ref)} names bucket ${JSON.stringify(bucket)}: a bucket name has 3-63 characters ` +
        'of a-z 0-9 . - and starts and ends with a letter or digit',
    );
  try {
    assertValidKey(prefix, true);
  } catch (err) {
    throw new InvalidStoreRefError(`store ${JSON.stringify(ref)} has a bad prefix: ${(err as Error).message}`);
  }
  return { kind: 's3', bucket, prefix };
}
