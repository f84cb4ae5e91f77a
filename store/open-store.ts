/**
 * Turning what a user names as the shared store into a PageStore: a directory path, or
 * `s3://bucket/prefix`. The S3 endpoint and credentials never travel with the name (it goes through
 * Temporal, in workflow inputs and histories): each process takes them from its own FERRY_S3_*
 * environment (temporal-config/environment.ts).
 */
import * as path from 'node:path';
import { s3Environment } from '../temporal-config/environment';
import { S3ObjectStore } from './object/s3-object-store';
import { ObjectPageStore } from './object/object-page-store';
import { DirectoryPageStore } from './directory/directory-page-store';
import type { PageStore } from './page-store';
import { parseStoreRef } from './store-ref';
import { assertStoreDirAllowed } from './safe-path';

export { InvalidStoreRefError, parseStoreRef, type StoreRef } from './store-ref';

/** How long the client of chunk uploads retries one put before the uploader takes over (ms). */
export const UPLOAD_RETRY_FOR_MS = 1_000;

const opened = new Map<string, PageStore>();

/**
 * The PageStore for `ref`, one per name and process (an S3 store keeps its connections). S3
 * endpoint and credentials come from `env`. Contacts nobody; see PageStore.assertWritable.
 */
export function openPageStore(ref: string, env: NodeJS.ProcessEnv = process.env): PageStore {
  const known = opened.get(ref);
  if (known) return known;
  const parsed = parseStoreRef(ref);
  let store: PageStore;
  if (parsed.kind === 'directory') {
    store = new DirectoryPageStore(path.resolve(parsed.dir), ref);
  } else {
    const s3 = s3Environment(env);
    const options = {
      endpoint: s3.endpoint,
      region: s3.region,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      bucket: parsed.bucket,
      ...(parsed.prefix === '' ? {} : { prefix: parsed.prefix }),
    };
    // Chunk uploads are retried forever by the uploader, which records the outage: their client
    // gives up after a second, so that an outage shows at once (and the switchover waits it out).
    const uploads = new S3ObjectStore({ ...options, retry: { retryForMs: UPLOAD_RETRY_FOR_MS } });
    store = new ObjectPageStore(new S3ObjectStore(options), ref, uploads);
  }
  opened.set(ref, store);
  return store;
}

/**
 * Checks a store named by a migration before any host touches it: a directory store must be one
 * of `allowedRoots` or under one (an S3 store is confined to its bucket and prefix by the key
 * rules). Returns `ref`; throws InvalidStoreRefError or StoreNotAllowedError.
 */
export function assertStoreAllowed(ref: string, allowedRoots: readonly string[]): string {
  const parsed = parseStoreRef(ref);
  if (parsed.kind === 'directory') assertStoreDirAllowed(parsed.dir, allowedRoots);
  return ref;
}

/** Closes every store `openPageStore` opened in this process. */
export function closePageStores(): void {
  for (const store of opened.values()) store.close();
  opened.clear();
}
