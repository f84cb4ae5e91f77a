/**
 * The one place where environment variables are read: endpoints and folders of this process, and
 * the S3 key that `ferry up --store s3` keeps under the state dir.
 */
import * as fs from 'node:fs';
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
 * Where the S3 key of the embedded SeaweedFS server is kept, under the state dir, when
 * FERRY_S3_CREDENTIALS_FILE is unset. `ferry up --store s3` generates it (mode 0600) at its first
 * run; every ferry process on the machine reads it from there unless FERRY_S3_ACCESS_KEY_ID and
 * FERRY_S3_SECRET_ACCESS_KEY are set.
 */
export const DEFAULT_S3_CREDENTIALS_FILE = path.join('credentials', 's3.json');

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
  /**
   * FERRY_NATS_CREDENTIALS_DIR, default `<stateDir>/credentials/nats`: one 0600 file per host,
   * `<hostId>.json`, that `ferry up` generates; a host agent hands its own file to its VMMs.
   */
  natsCredentialsDir: string;
  /** TLS of the NATS client connections, when FERRY_NATS_TLS_* are set (see NatsTlsEnvironment). */
  natsTls?: NatsTlsEnvironment;
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

/**
 * TLS files of the NATS connections. Clients (the hosts' VMMs) trust `caFile`; nats-server started
 * by `ferry up` presents `serverCertFile` with `serverKeyFile`. Client certificates are not used.
 */
export interface NatsTlsEnvironment {
  /** FERRY_NATS_TLS_CA: PEM of the CA that signed nats-server's certificate. */
  caFile: string;
  /** FERRY_NATS_TLS_SERVER_CERT: PEM certificate of nats-server (for `ferry up`'s server). */
  serverCertFile?: string;
  /** FERRY_NATS_TLS_SERVER_KEY: PEM key of `serverCertFile`. */
  serverKeyFile?: string;
}

/**
 * Reads FERRY_NATS_TLS_*: undefined when none is set. Throws when a certificate or key is given
 * without the CA, or one of the pair without the other, naming the variables.
 */
export function natsTlsEnvironment(env: NodeJS.ProcessEnv = process.env): NatsTlsEnvironment | undefined {
  const caFile = nonEmpty(env['FERRY_NATS_TLS_CA']);
  const serverCertFile = nonEmpty(env['FERRY_NATS_TLS_SERVER_CERT']);
  const serverKeyFile = nonEmpty(env['FERRY_NATS_TLS_SERVER_KEY']);
  if (caFile === undefined && serverCertFile === undefined && serverKeyFile === undefined) return undefined;
  if (caFile === undefined)
    throw new Error('FERRY_NATS_TLS_SERVER_CERT and _KEY need FERRY_NATS_TLS_CA, the CA the clients trust');
  if ((serverCertFile === undefined) !== (serverKeyFile === undefined))
    throw new Error('FERRY_NATS_TLS_SERVER_CERT and FERRY_NATS_TLS_SERVER_KEY go together: set both or neither');
  return {
    caFile: path.resolve(caFile),
    ...(serverCertFile !== undefined && serverKeyFile !== undefined
      ? { serverCertFile: path.resolve(serverCertFile), serverKeyFile: path.resolve(serverKeyFile) }
      : {}),
  };
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
  const natsTls = natsTlsEnvironment(env);
  return {
    stateDir,
    toolsDir: path.resolve(env['FERRY_TOOLS_DIR'] ?? path.join(root, '.ferry', 'tools')),
    temporalAddress: env['FERRY_TEMPORAL_ADDRESS'] ?? `127.0.0.1:${temporalPort}`,
    temporalPort,
    temporalUiPort: intFromEnv(env, 'FERRY_TEMPORAL_UI_PORT', DEFAULT_TEMPORAL_UI_PORT),
    natsUrl: env['FERRY_NATS_URL'] ?? `nats://127.0.0.1:${natsPort}`,
    natsPort,
    clusterSecretFile: path.resolve(env['FERRY_CLUSTER_SECRET_FILE'] ?? path.join(stateDir, 'cluster.key')),
    natsCredentialsDir: path.resolve(
      nonEmpty(env['FERRY_NATS_CREDENTIALS_DIR']) ?? path.join(stateDir, 'credentials', 'nats'),
    ),
    ...(natsTls ? { natsTls } : {}),
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
  /** FERRY_S3_ACCESS_KEY_ID, else the key in `credentialsFile`. */
  accessKeyId: string;
  /** FERRY_S3_SECRET_ACCESS_KEY, else the secret in `credentialsFile`. */
  secretAccessKey: string;
  /** The file the key was read from; absent when it came from FERRY_S3_ACCESS_KEY_ID/_SECRET_ACCESS_KEY. */
  credentialsFile?: string;
  /** FERRY_S3_REGION, default DEFAULT_S3_REGION. */
  region: string;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/**
 * Where the embedded server's S3 key is kept: FERRY_S3_CREDENTIALS_FILE, default
 * `<stateDir>/credentials/s3.json` (DEFAULT_S3_CREDENTIALS_FILE).
 */
export function s3CredentialsFile(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = nonEmpty(env['FERRY_S3_CREDENTIALS_FILE']);
  return path.resolve(explicit ?? path.join(ferryEnvironment(env).stateDir, DEFAULT_S3_CREDENTIALS_FILE));
}

/** The key in an S3 credentials file (`{"accessKeyId", "secretAccessKey"}`), or undefined when there is none. */
export function readS3CredentialsFile(file: string): { accessKeyId: string; secretAccessKey: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the S3 key in ${file}: ${(err as Error).message}`, { cause: err });
  }
  const parsed = JSON.parse(text) as { accessKeyId?: unknown; secretAccessKey?: unknown };
  if (typeof parsed.accessKeyId !== 'string' || typeof parsed.secretAccessKey !== 'string')
    throw new Error(`the S3 key file ${file} must hold {"accessKeyId", "secretAccessKey"} strings`);
  return { accessKeyId: parsed.accessKeyId, secretAccessKey: parsed.secretAccessKey };
}

/**
 * Reads the FERRY_S3_* variables, and the key from s3CredentialsFile when FERRY_S3_ACCESS_KEY_ID and
 * FERRY_S3_SECRET_ACCESS_KEY are unset. Throws when FERRY_S3_ENDPOINT is not an http(s) URL, when
 * only one of the two key variables is set, and when there is no key at all (run `ferry up --store
 * s3`, or set both variables), naming the variables and the file.
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
    ...s3Key(env),
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

function s3Key(env: NodeJS.ProcessEnv): Pick<S3Environment, 'accessKeyId' | 'secretAccessKey' | 'credentialsFile'> {
  const accessKeyId = nonEmpty(env['FERRY_S3_ACCESS_KEY_ID']);
  const secretAccessKey = nonEmpty(env['FERRY_S3_SECRET_ACCESS_KEY']);
  if (accessKeyId !== undefined && secretAccessKey !== undefined) return { accessKeyId, secretAccessKey };
  if (accessKeyId !== undefined || secretAccessKey !== undefined)
    throw new Error('FERRY_S3_ACCESS_KEY_ID and FERRY_S3_SECRET_ACCESS_KEY go together: set both or neither');
  const credentialsFile = s3CredentialsFile(env);
  const stored = readS3CredentialsFile(credentialsFile);
  if (stored === undefined) throw new S3KeyMissingError(credentialsFile);
  return { ...stored, credentialsFile };
}

/** Neither FERRY_S3_ACCESS_KEY_ID/_SECRET_ACCESS_KEY nor the S3 key file (`file`) gives a key. */
export class S3KeyMissingError extends Error {
  override readonly name = 'S3KeyMissingError';

  constructor(readonly file: string) {
    super(
      `no S3 key: ${file} does not exist (\`ferry up --store s3\` creates it) and ` +
        'FERRY_S3_ACCESS_KEY_ID/FERRY_S3_SECRET_ACCESS_KEY are unset',
    );
  }
}
