/**
 * The files of the embedded SeaweedFS server, in `<stateDir>/seaweedfs/`: its data dir, the S3
 * identity config holding the one access key (mode 0600), `security.toml` and the gRPC certificates
 * (seaweedfs-security.ts), a record of its eight ports, and the two unix sockets it is told to put
 * there.
 *
 * What weed 4.48 cannot be told: it also serves every gRPC port on a unix socket at the fixed path
 * `/tmp/seaweedfs-<role>-grpc-<port>.sock`, and leaves some of them behind when it exits (all of
 * them after SIGKILL). `removeGrpcSockets` deletes those of one server once nothing listens on
 * them.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readS3CredentialsFile } from '../temporal-config';
import { writePrivateFile } from './private-files';
import { servicePaths } from './service-files';

/** Service name: its folder in the state dir and its name in messages. */
export const SEAWEED_SERVICE_NAME = 'seaweedfs';
/** Where weed puts its gRPC unix sockets, whatever TMPDIR says. */
const WEED_GRPC_SOCKET_DIR = '/tmp';

/** Every TCP port one `weed server` listens on (all on 127.0.0.1). */
export interface SeaweedPorts {
  s3: number;
  s3Grpc: number;
  master: number;
  masterGrpc: number;
  volume: number;
  volumeGrpc: number;
  filer: number;
  filerGrpc: number;
}

/** The keys of SeaweedPorts, S3 first. */
export const SEAWEED_PORT_NAMES: readonly (keyof SeaweedPorts)[] = [
  's3',
  's3Grpc',
  'master',
  'masterGrpc',
  'volume',
  'volumeGrpc',
  'filer',
  'filerGrpc',
];

/** Static S3 credentials: the one identity the gateway accepts. */
export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/** Paths of the server's files under `<stateDir>/seaweedfs/`. */
export interface SeaweedPaths {
  dir: string;
  /** Volumes, the filer's leveldb and the master's raft state; deleted by a stop with `removeData`. */
  dataDir: string;
  identitiesFile: string;
  /** weed's `security.toml` (found through `-config_dir`): see seaweedfs-security.ts. */
  securityFile: string;
  /** The gRPC CA, certificate and key of seaweedfs-security.ts. */
  tlsDir: string;
  portsFile: string;
  filerSocket: string;
  s3Socket: string;
}

/** Paths of the SeaweedFS files under `stateDir`. */
export function seaweedPaths(stateDir: string): SeaweedPaths {
  const { dir } = servicePaths(stateDir, SEAWEED_SERVICE_NAME);
  return {
    dir,
    dataDir: path.join(dir, 'data'),
    identitiesFile: path.join(dir, 's3-identities.json'),
    securityFile: path.join(dir, 'security.toml'),
    tlsDir: path.join(dir, 'tls'),
    portsFile: path.join(dir, 'ports.json'),
    filerSocket: path.join(dir, 'filer.sock'),
    s3Socket: path.join(dir, 's3.sock'),
  };
}

/** A fresh random access key (`FERRY` + 16 hex digits) and 40-character secret. */
export function generateCredentials(): S3Credentials {
  return {
    accessKeyId: `FERRY${randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64url'),
  };
}

/**
 * The key in the S3 credentials file `file` (see temporal-config's s3CredentialsFile), generating
 * and writing it (mode 0600, its folder 0700) when there is none: `ferry up --store s3` does this
 * at its first run. Throws when the file exists but does not hold a key.
 */
export function ensureS3CredentialsFile(file: string): S3Credentials {
  const stored = readS3CredentialsFile(file);
  if (stored !== undefined) return stored;
  const credentials = generateCredentials();
  writePrivateFile(file, `${JSON.stringify(credentials, null, 2)}\n`);
  return credentials;
}

/**
 * Text of weed's `-s3.config` file: one identity with full rights. No identity is named
 * `anonymous`, so unsigned requests are refused.
 */
export function s3IdentitiesConfig(credentials: S3Credentials): string {
  const identity = {
    name: 'ferry',
    credentials: [{ accessKey: credentials.accessKeyId, secretKey: credentials.secretAccessKey }],
    actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'],
  };
  return `${JSON.stringify({ identities: [identity] }, null, 2)}\n`;
}

/** Credentials of the identity file at `file`, or undefined when it is missing or unreadable. */
export function readStoredCredentials(file: string): S3Credentials | undefined {
  try {
    const config = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      identities?: { credentials?: { accessKey?: unknown; secretKey?: unknown }[] }[];
    };
    const first = config.identities?.[0]?.credentials?.[0];
    if (typeof first?.accessKey !== 'string' || typeof first.secretKey !== 'string') return undefined;
    return { accessKeyId: first.accessKey, secretAccessKey: first.secretKey };
  } catch {
    return undefined;
  }
}

/** Writes the identity file, readable by its owner only (it holds the secret). */
export function writeIdentitiesFile(file: string, credentials: S3Credentials): void {
  fs.writeFileSync(file, s3IdentitiesConfig(credentials), { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

/** Records the ports of a launch, so that a later stop or sweep finds its sockets. */
export function writePortsRecord(file: string, ports: SeaweedPorts): void {
  fs.writeFileSync(file, `${JSON.stringify(ports)}\n`);
}

/** The ports recorded at the last launch, or undefined when there is no readable record. */
export function readPortsRecord(file: string): SeaweedPorts | undefined {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    if (!SEAWEED_PORT_NAMES.every((name) => Number.isInteger(parsed[name]))) return undefined;
    return parsed as unknown as SeaweedPorts;
  } catch {
    return undefined;
  }
}

/** The `/tmp/seaweedfs-<role>-grpc-<port>.sock` paths weed creates for `ports`. */
export function grpcSocketPaths(ports: SeaweedPorts): string[] {
  const roles: [string, number][] = [
    ['master', ports.masterGrpc],
    ['volume', ports.volumeGrpc],
    ['filer', ports.filerGrpc],
    ['s3', ports.s3Grpc],
  ];
  return roles.map(([role, port]) => path.join(WEED_GRPC_SOCKET_DIR, `seaweedfs-${role}-grpc-${port}.sock`));
}

/** Unix socket paths some live process listens on, from /proc/net/unix (empty where there is none). */
function listeningUnixSockets(): Set<string> {
  try {
    const lines = fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1);
    return new Set(lines.map((line) => line.trim().split(/\s+/)[7] ?? '').filter((p) => p !== ''));
  } catch {
    return new Set();
  }
}

/**
 * Deletes the gRPC sockets in /tmp of the server recorded under `stateDir`, except those a live
 * process listens on: after the server's ports were reused, they belong to another server. A
 * caller that has just killed the server passes `evenIfListening`: while the server held its ports
 * no other could, so the sockets are its own even if it has not quite exited yet.
 */
export function removeGrpcSockets(stateDir: string, options: { evenIfListening?: boolean } = {}): void {
  const ports = readPortsRecord(seaweedPaths(stateDir).portsFile);
  if (ports === undefined) return;
  const live = options.evenIfListening === true ? new Set<string>() : listeningUnixSockets();
  for (const socket of grpcSocketPaths(ports)) {
    if (!live.has(socket)) fs.rmSync(socket, { force: true });
  }
}
