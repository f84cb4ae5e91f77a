/**
 * Which shared store the host agents of the embedded default use: the store directory (the
 * default), or with `--store s3` the bucket `ferry` of the embedded SeaweedFS server
 * (seaweedfs-embedded.ts). A host agent keeps the store it was started with, so `ferry up` records
 * the choice in the state dir: a later `up` on the other store is refused rather than silently
 * mixing stores, and `down` knows where the stopped VMs' ownership records are.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { s3Environment, type FerryEnvironment, type S3Environment, type S3KeyMissingError } from '../temporal-config';
import { openPageStore } from '../store/open-store';
import type { PageStore } from '../store/page-store';
import { ensureS3CredentialsFile } from './seaweedfs-files';

/** Bucket of the embedded S3 store. */
export const EMBEDDED_S3_BUCKET = 'ferry';
/** Store name of the embedded S3 store, as the host agents get it in FERRY_STORE. */
export const EMBEDDED_S3_STORE = `s3://${EMBEDDED_S3_BUCKET}/pages`;

/** The stores `ferry up --store` offers: the store directory, or the embedded SeaweedFS. */
export type EmbeddedStore = 'directory' | 's3';

/** What the host agents of a cluster were started on; kept in `<stateDir>/workers/store.json`. */
export interface ClusterStoreRecord {
  /** A directory or `s3://bucket/prefix` (FERRY_STORE of the host agents). */
  store: string;
  /** FERRY_S3_ENDPOINT of the host agents, for an S3 store. */
  s3Endpoint?: string;
  /** Whether the store is on the embedded SeaweedFS server of the state dir. */
  embeddedSeaweed?: boolean;
}

/** `--store s3` was given with a FERRY_S3_ENDPOINT the embedded server cannot serve. */
export class EmbeddedS3EndpointError extends Error {
  override readonly name = 'EmbeddedS3EndpointError';
}

/** The cluster already runs its host agents on another store than the one asked for. */
export class ClusterStoreMismatchError extends Error {
  override readonly name = 'ClusterStoreMismatchError';

  constructor(
    readonly stateDir: string,
    readonly running: ClusterStoreRecord,
    readonly wanted: ClusterStoreRecord,
  ) {
    super(
      `the cluster in ${stateDir} is up on store ${describeStore(running)}, not on ${describeStore(wanted)}: ` +
        'its host agents keep the store they were started with; run `ferry down` first to switch stores',
    );
  }
}

/**
 * `env` with the store `choice` names: unchanged without a choice, the store directory for
 * `directory`, and for `s3` the embedded store with the endpoint and credentials of FERRY_S3_* in
 * `processEnv`. Throws EmbeddedS3EndpointError when that endpoint is not plain http on 127.0.0.1,
 * where the embedded server listens (`localhost` may resolve to ::1, where nothing does).
 */
export function embeddedStoreEnvironment(
  env: FerryEnvironment,
  choice: EmbeddedStore | undefined,
  processEnv: NodeJS.ProcessEnv = process.env,
): FerryEnvironment {
  if (choice === undefined) return env;
  const withoutS3 = { ...env };
  delete withoutS3.s3;
  if (choice === 'directory') return { ...withoutS3, store: env.storeDir };
  const s3 = embeddedS3Environment(processEnv);
  const { protocol, hostname } = new URL(s3.endpoint);
  if (protocol !== 'http:' || hostname !== '127.0.0.1')
    throw new EmbeddedS3EndpointError(
      `--store s3 runs SeaweedFS on http://127.0.0.1, but FERRY_S3_ENDPOINT is ${s3.endpoint}; ` +
        'unset it or give http://127.0.0.1:<port>',
    );
  return { ...withoutS3, store: EMBEDDED_S3_STORE, s3 };
}

/**
 * s3Environment, but without a key anywhere, the embedded server's key is generated into the key
 * file first (mode 0600): the first `ferry up --store s3` does that, and every ferry process on the
 * machine then reads the key from there.
 */
function embeddedS3Environment(processEnv: NodeJS.ProcessEnv): S3Environment {
  try {
    return s3Environment(processEnv);
  } catch (err) {
    if ((err as Error).name !== 'S3KeyMissingError') throw err;
    ensureS3CredentialsFile((err as S3KeyMissingError).file);
    return s3Environment(processEnv);
  }
}

/** The record of `env`'s store, without `embeddedSeaweed` (the caller knows whether it started one). */
export function clusterStoreRecord(
  env: FerryEnvironment,
  processEnv: NodeJS.ProcessEnv = process.env,
): ClusterStoreRecord {
  if (!/^s3:\/\//i.test(env.store)) return { store: env.store };
  return { store: env.store, s3Endpoint: (env.s3 ?? s3Environment(processEnv)).endpoint };
}

/** A store for messages: its name, and where an S3 store's server is. */
export function describeStore(record: ClusterStoreRecord): string {
  return record.s3Endpoint === undefined ? record.store : `${record.store} (S3 at ${record.s3Endpoint})`;
}

/** Whether host agents running on `running` may serve a cluster that asks for `wanted`. */
export function sameStore(running: ClusterStoreRecord, wanted: ClusterStoreRecord): boolean {
  return running.store === wanted.store && running.s3Endpoint === wanted.s3Endpoint;
}

function recordFile(stateDir: string): string {
  return path.join(stateDir, 'workers', 'store.json');
}

/** Records the host agents' store (before they start). */
export function writeClusterStore(stateDir: string, record: ClusterStoreRecord): void {
  fs.mkdirSync(path.dirname(recordFile(stateDir)), { recursive: true });
  fs.writeFileSync(recordFile(stateDir), `${JSON.stringify(record)}\n`);
}

/**
 * The recorded store; without a record (host agents of a ferry that wrote none, which knew only
 * the directory store) the store directory of `env`.
 */
export function readClusterStore(env: FerryEnvironment): ClusterStoreRecord {
  try {
    const parsed = JSON.parse(fs.readFileSync(recordFile(env.stateDir), 'utf8')) as Partial<ClusterStoreRecord>;
    if (typeof parsed.store === 'string') return parsed as ClusterStoreRecord;
  } catch {
    // Missing or torn: fall through to what a ferry without records used.
  }
  return { store: env.storeDir };
}

/** Forgets the recorded store, once no host agent runs on it. */
export function removeClusterStore(stateDir: string): void {
  fs.rmSync(recordFile(stateDir), { force: true });
}

/**
 * Removes the ownership records of `vmIds` (whose VMs were stopped) from the store `record` names,
 * whoever holds them. Returns a line when it could not; it never throws, since a store that cannot
 * be reached must not keep `ferry down` from stopping the rest. With `unreachable` (why the store
 * cannot be reached) it does not try, and says so.
 */
export async function forgetOwners(
  record: ClusterStoreRecord,
  vmIds: readonly string[],
  unreachable?: string,
): Promise<string[]> {
  if (vmIds.length === 0) return [];
  const processEnv =
    record.s3Endpoint === undefined ? process.env : { ...process.env, FERRY_S3_ENDPOINT: record.s3Endpoint };
  const left = (ids: readonly string[], err: unknown): string[] => [
    `ownership records of VM ${ids.join(', ')} left in ${describeStore(record)}: ${(err as Error).message}`,
  ];
  if (unreachable !== undefined) return left(vmIds, new Error(unreachable));
  let store: PageStore;
  try {
    store = openPageStore(record.store, processEnv);
  } catch (err) {
    return left(vmIds, err);
  }
  try {
    for (const [index, vmId] of vmIds.entries()) {
      try {
        const owner = await store.readOwner(vmId);
        if (owner !== undefined) await store.releaseOwnership(vmId, owner.hostId);
      } catch (err) {
        // The next VMs would wait out the same retries against the same unreachable store.
        return left(vmIds.slice(index), err);
      }
    }
    return [];
  } finally {
    store.close();
  }
}
