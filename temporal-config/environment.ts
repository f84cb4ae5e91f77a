/**
 * The one place where environment variables are read: endpoints and folders of this process.
 */
import * as path from 'node:path';
import {
  DEFAULT_MIGRATION_LEASE_TTL_MS,
  DEFAULT_NATS_PORT,
  DEFAULT_TEMPORAL_PORT,
  DEFAULT_TEMPORAL_UI_PORT,
} from './presets';

/** S3 gateway port of the embedded SeaweedFS server (`ferry up`), used when FERRY_S3_ENDPOINT is unset. */
export const DEFAULT_S3_PORT = 8333;
/** Region signed into S3 requests; SeaweedFS accepts any, AWS needs the bucket's. */
export const DEFAULT_S3_REGION = 'us-east-1';
/**
 * Access key of the embedded SeaweedFS server when FERRY_S3_ACCESS_KEY_ID is unset. Fixed rather
 * than random so that every ferry process on the machine agrees without a shared file; the server
 * listens on 127.0.0.1 only.
 */
export const DEFAULT_S3_ACCESS_KEY_ID = 'ferry';
/** Secret of DEFAULT_S3_ACCESS_KEY_ID; see there. */
export const DEFAULT_S3_SECRET_ACCESS_KEY = 'ferry-embedded-seaweedfs-secret';

/** Root of the project checkout (two levels up from dist/temporal-config or temporal-config). */
export function projectRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i += 1) {
    if (path.basename(dir) === 'dist') return path.dirname(dir);
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

/** Resolved endpoints and folders for this process, read from the environment once. */
export interface FerryEnvironment {
  /** Where services keep their state, logs and pid files, and hosts their VM records. */
  stateDir: string;
  /** Where infra/setup.sh installs the pinned service binaries (a Python venv). */
  toolsDir: string;
  temporalAddress: string;
  temporalPort: number;
  temporalUiPort: number;
  natsUrl: string;
  natsPort: number;
  /**
   * The cluster secret every host agent derives migration keys from (FERRY_CLUSTER_SECRET_FILE,
   * default `<stateDir>/cluster.key`; created 0600 by the first agent that needs it).
   */
  clusterSecretFile: string;
  /** Default shared page store directory, seen by every host. */
  storeDir: string;
  /** Default shared store: FERRY_STORE (a directory or `s3://bucket/prefix`), else `storeDir`. */
  store: string;
  /**
   * Directories under which a migration may name a directory store of its own (`policy.store`):
   * `storeDir`, `store` if it is a directory, and each absolute directory of FERRY_STORE_ROOTS
   * (':'-separated). Resolved, without duplicates.
   */
  storeRoots: string[];
  /** S3 endpoint and credentials to hand to child processes (FERRY_S3_*), when they are set here. */
  s3?: S3Environment;
}

function intFromEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0 || value > 65535) {
    throw new Error(`${name} must be a port number, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Reads FERRY_* environment variables; defaults place everything under `<repo>/.ferry`. */
export function ferryEnvironment(env: NodeJS.ProcessEnv = process.env): FerryEnvironment {
  const root = projectRoot();
  const stateDir = path.resolve(env['FERRY_STATE_DIR'] ?? path.join(root, '.ferry', 'state'));
  const temporalPort = intFromEnv(env, 'FERRY_TEMPORAL_PORT', DEFAULT_TEMPORAL_PORT);
  const natsPort = intFromEnv(env, 'FERRY_NATS_PORT', DEFAULT_NATS_PORT);
  const storeDir = path.resolve(env['FERRY_STORE_DIR'] ?? path.join(stateDir, 'store'));
  return {
    stateDir,
    toolsDir: path.resolve(env['FERRY_TOOLS_DIR'] ?? path.join(root, '.ferry', 'tools')),
    temporalAddress: env['FERRY_TEMPORAL_ADDRESS'] ?? `127.0.0.1:${temporalPort}`,
    temporalPort,
    temporalUiPort: intFromEnv(env, 'FERRY_TEMPORAL_UI_PORT', DEFAULT_TEMPORAL_UI_PORT),
    natsUrl: env['FERRY_NATS_URL'] ?? `nats://127.0.0.1:${natsPort}`,
    natsPort,
    clusterSecretFile: path.resolve(env['FERRY_CLUSTER_SECRET_FILE'] ?? path.join(stateDir, 'cluster.key')),
    storeDir,
    store: nonEmpty(env['FERRY_STORE']) ?? storeDir,
    storeRoots: storeRootsFromEnv(env, storeDir),
  };
}

/**
 * The allowed store roots (see FerryEnvironment.storeRoots). Throws naming FERRY_STORE_ROOTS when
 * one of its entries is not an absolute path.
 */
function storeRootsFromEnv(env: NodeJS.ProcessEnv, storeDir: string): string[] {
  const configured = nonEmpty(env['FERRY_STORE']);
  const roots = [storeDir];
  if (configured !== undefined && !/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(configured))
    roots.push(path.resolve(configured));
  for (const entry of (env['FERRY_STORE_ROOTS'] ?? '').split(path.delimiter)) {
    if (entry === '') continue;
    if (!path.isAbsolute(entry))
      throw new Error(
        `FERRY_STORE_ROOTS must list absolute directories separated by ':', got ${JSON.stringify(entry)}`,
      );
    roots.push(path.resolve(entry));
  }
  return [...new Set(roots)];
}

/**
 * Where the S3 page store is and how to sign for it: always explicit, so that the AWS SDK never
 * falls back to its default chain (shared files, instance metadata).
 */
export interface S3Environment {
  /** FERRY_S3_ENDPOINT, default `http://127.0.0.1:8333` (the embedded SeaweedFS gateway). */
  endpoint: string;
  /** Port of `endpoint`: where the embedded SeaweedFS gateway listens. */
  port: number;
  /** FERRY_S3_ACCESS_KEY_ID, default DEFAULT_S3_ACCESS_KEY_ID. */
  accessKeyId: string;
  /** FERRY_S3_SECRET_ACCESS_KEY, default DEFAULT_S3_SECRET_ACCESS_KEY. */
  secretAccessKey: string;
  /** FERRY_S3_REGION, default DEFAULT_S3_REGION. */
  region: string;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/**
 * Reads the FERRY_S3_* variables. Throws when FERRY_S3_ENDPOINT is not an http(s) URL, naming
 * the variable and the bad value.
 */
export function s3Environment(env: NodeJS.ProcessEnv = process.env): S3Environment {
  const raw = nonEmpty(env['FERRY_S3_ENDPOINT']) ?? `http://127.0.0.1:${DEFAULT_S3_PORT}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(
      `FERRY_S3_ENDPOINT must be an http(s) URL such as http://127.0.0.1:8333, got ${JSON.stringify(raw)}`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`FERRY_S3_ENDPOINT must use http or https, got ${JSON.stringify(raw)}`);
  }
  return {
    endpoint: raw.replace(/\/+$/, ''),
    port: url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80,
    accessKeyId: nonEmpty(env['FERRY_S3_ACCESS_KEY_ID']) ?? DEFAULT_S3_ACCESS_KEY_ID,
    secretAccessKey: nonEmpty(env['FERRY_S3_SECRET_ACCESS_KEY']) ?? DEFAULT_S3_SECRET_ACCESS_KEY,
    region: nonEmpty(env['FERRY_S3_REGION']) ?? DEFAULT_S3_REGION,
  };
}

/** Shortest and longest lease of a migration's engine state accepted from FERRY_LEASE_TTL_MS (ms). */
export const MIGRATION_LEASE_TTL_RANGE_MS = { min: 500, max: 3_600_000 } as const;

/**
 * The lease a host agent gives the engine's state of each migration in its VMMs (ms):
 * FERRY_LEASE_TTL_MS, default DEFAULT_MIGRATION_LEASE_TTL_MS. Throws naming the variable and the
 * bad value when it is not an integer in MIGRATION_LEASE_TTL_RANGE_MS.
 */
export function migrationLeaseTtlMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = nonEmpty(env['FERRY_LEASE_TTL_MS']);
  if (raw === undefined) return DEFAULT_MIGRATION_LEASE_TTL_MS;
  const value = Number(raw);
  const { min, max } = MIGRATION_LEASE_TTL_RANGE_MS;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`FERRY_LEASE_TTL_MS must be an integer number of ms in ${min}..${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}
