/**
 * The embedded SeaweedFS server: one `weed server` process running a master, a volume server, a
 * filer and the S3 gateway, with its data in `<stateDir>/seaweedfs/data` (its files:
 * seaweedfs-files.ts).
 *
 * Every one of its eight TCP ports (four HTTP, four gRPC) binds 127.0.0.1, telemetry is off, the
 * filer's HTTP API is off (the gateway talks to it over gRPC), and the gateway accepts exactly one
 * access key, given or generated (then kept in the identity file and reused by later starts).
 * Unsigned requests are refused. Its volume and filer ports refuse requests without a JWT its
 * master signed, and its gRPC ports clients without its certificate (seaweedfs-security.ts), so the
 * gateway is the way in. A bucket must be created before use, as on AWS (no auto-create).
 *
 * Start and stop are idempotent (see service.ts). A start returns once the gateway answers a signed
 * ListBuckets and the master knows the volume server, so that objects written before a crash can
 * be read at once. The master is told to elect itself within a second: with its default 10 s
 * election timeout a restart on old data takes about 15 s instead of about 3 s.
 */
import * as fs from 'node:fs';
import { DEFAULT_S3_REGION } from '../temporal-config';
import { resolveBinary } from './binaries';
import { LOOPBACK_HOST } from './ports';
import { waitForS3Gateway } from './seaweedfs-ready';
import { writeSecurityFile } from './seaweedfs-security';
import type { ServiceSpec, ServiceStartResult, ServiceStopResult } from './service';
import { startService, stopService } from './service';
import type { S3Credentials, SeaweedPorts } from './seaweedfs-files';
import {
  generateCredentials,
  readPortsRecord,
  readStoredCredentials,
  removeGrpcSockets,
  SEAWEED_PORT_NAMES,
  SEAWEED_SERVICE_NAME,
  seaweedPaths,
  writeIdentitiesFile,
  writePortsRecord,
} from './seaweedfs-files';

/** Start timeout until the gateway serves signed requests (ms); usually about 3 s. */
export const DEFAULT_SEAWEED_START_TIMEOUT_MS = 60_000;
/** Grace between SIGTERM and SIGKILL (ms): the filer alone waits 15 s for its gRPC streams. */
export const DEFAULT_SEAWEED_STOP_GRACE_MS = 20_000;
/** Volumes the volume server may hold; each bucket takes 7 as soon as it is written to. */
export const SEAWEED_MAX_VOLUMES = 100;
/** Size at which the master stops writing to a volume (MiB); weed's 30 GiB default is for disks. */
export const SEAWEED_VOLUME_SIZE_LIMIT_MB = 1024;

/** Where and how to run the server. */
export interface SeaweedServerOptions {
  /** Root state directory; files go to `<stateDir>/seaweedfs/`. */
  stateDir: string;
  /** S3 gateway port on 127.0.0.1. */
  port: number;
  /** The other seven ports; each missing one defaults to `port` + 1..7 in SEAWEED_PORT_NAMES order. */
  internalPorts?: Partial<Omit<SeaweedPorts, 's3'>>;
  /** The one identity; default the stored one, else freshly generated. */
  credentials?: S3Credentials;
  /** Region the readiness check signs with; default DEFAULT_S3_REGION (SeaweedFS accepts any). */
  region?: string;
  /** Default true; see ServiceSpec.detached. */
  detached?: boolean;
  /** Default DEFAULT_SEAWEED_START_TIMEOUT_MS. */
  startTimeoutMs?: number;
}

/** The result of a start plus what a client needs. */
export interface SeaweedServerStartResult extends ServiceStartResult {
  /** `http://127.0.0.1:<port>`; use path-style addressing. */
  endpoint: string;
  credentials: S3Credentials;
  ports: SeaweedPorts;
  dataDir: string;
}

/** All eight ports for `options`; throws when one is out of range or two coincide. */
export function resolveSeaweedPorts(
  port: number,
  internalPorts: SeaweedServerOptions['internalPorts'] = {},
): SeaweedPorts {
  const ports = { s3: port } as SeaweedPorts;
  SEAWEED_PORT_NAMES.forEach((name, index) => {
    if (name !== 's3') ports[name] = internalPorts[name] ?? port + index;
  });
  for (const name of SEAWEED_PORT_NAMES) {
    const value = ports[name];
    if (!Number.isInteger(value) || value < 1 || value > 65535) {
      throw new Error(`SeaweedFS ${name} port must be an integer in 1..65535, got ${value}`);
    }
  }
  if (new Set(Object.values(ports)).size !== SEAWEED_PORT_NAMES.length) {
    throw new Error(`SeaweedFS ports must all differ, got ${JSON.stringify(ports)}`);
  }
  return ports;
}

/** Arguments of `weed` for a server with `ports` under `stateDir` (flags checked against weed 4.48). */
export function seaweedServerArgs(stateDir: string, ports: SeaweedPorts): string[] {
  const paths = seaweedPaths(stateDir);
  return [
    // Logs to our log file, not glog files in /tmp. Toml configs are looked up in our folder too
    // (weed also reads ~/.seaweedfs and /etc/seaweedfs; none exist on ferry's machines).
    '-logtostderr',
    `-config_dir=${paths.dir}`,
    'server',
    `-ip=${LOOPBACK_HOST}`,
    `-ip.bind=${LOOPBACK_HOST}`,
    `-dir=${paths.dataDir}`,
    '-master.telemetry=false',
    `-master.port=${ports.master}`,
    `-master.port.grpc=${ports.masterGrpc}`,
    '-master.electionTimeout=1s',
    `-master.volumeSizeLimitMB=${SEAWEED_VOLUME_SIZE_LIMIT_MB}`,
    `-volume.port=${ports.volume}`,
    `-volume.port.grpc=${ports.volumeGrpc}`,
    `-volume.max=${SEAWEED_MAX_VOLUMES}`,
    '-volume.preStopSeconds=0',
    '-filer',
    `-filer.port=${ports.filer}`,
    `-filer.port.grpc=${ports.filerGrpc}`,
    '-filer.disableHttp',
    `-filer.localSocket=${paths.filerSocket}`,
    '-s3',
    `-s3.port=${ports.s3}`,
    `-s3.port.grpc=${ports.s3Grpc}`,
    `-s3.config=${paths.identitiesFile}`,
    `-s3.localSocket=${paths.s3Socket}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    '-s3.autoCreateBucket=false',
    '-s3.allowDeleteBucketNotEmpty=false',
  ];
}

/** Unsets the caller's AWS_* and WEED_* variables for the server: weed reads some as configuration. */
function scrubbedEnv(): NodeJS.ProcessEnv {
  const names = Object.keys(process.env).filter((name) => /^(AWS_|WEED_|S3_EXTERNAL_URL$)/.test(name));
  return Object.fromEntries(names.map((name) => [name, undefined]));
}

/**
 * Starts the server unless it already runs, and waits until the gateway serves signed requests.
 * Throws BinaryNotFoundError, PortInUseError (the S3 port) or ServiceStartError (with the log's
 * tail; also when another of its ports is taken, which weed reports before it exits).
 */
export async function startSeaweedServer(options: SeaweedServerOptions): Promise<SeaweedServerStartResult> {
  const command = resolveBinary('weed');
  const paths = seaweedPaths(options.stateDir);
  const ports = resolveSeaweedPorts(options.port, options.internalPorts);
  const credentials = options.credentials ?? readStoredCredentials(paths.identitiesFile) ?? generateCredentials();
  const region = options.region ?? DEFAULT_S3_REGION;
  let grpcClosed = true;
  const spec: ServiceSpec = {
    name: SEAWEED_SERVICE_NAME,
    command,
    args: seaweedServerArgs(options.stateDir, ports),
    stateDir: options.stateDir,
    port: ports.s3,
    detached: options.detached ?? true,
    startTimeoutMs: options.startTimeoutMs ?? DEFAULT_SEAWEED_START_TIMEOUT_MS,
    portHint: 'set FERRY_S3_ENDPOINT',
    env: scrubbedEnv(),
    beforeSpawn: () => {
      // Those of a previous launch that died, before the record of its ports is overwritten.
      removeGrpcSockets(options.stateDir);
      fs.mkdirSync(paths.dataDir, { recursive: true });
      // The filer's and the gateway's unix sockets live there: for this user only.
      fs.chmodSync(paths.dir, 0o700);
      writeIdentitiesFile(paths.identitiesFile, credentials);
      grpcClosed = writeSecurityFile(paths.securityFile, paths.tlsDir);
      writePortsRecord(paths.portsFile, ports);
    },
    ready: (port, remainingMs) => {
      // The record is this launch's, or that of a server already running, maybe on other ports.
      const live = readPortsRecord(paths.portsFile) ?? ports;
      return waitForS3Gateway(`http://${LOOPBACK_HOST}:${port}`, live.master, credentials, region, remainingMs);
    },
  };
  let result: ServiceStartResult;
  try {
    result = await startService(spec);
  } catch (error) {
    // startService has ended what it launched; weed's sockets in /tmp outlive it.
    removeGrpcSockets(options.stateDir);
    throw error;
  }
  const live = readPortsRecord(paths.portsFile) ?? ports;
  const endpoint = `http://${LOOPBACK_HOST}:${result.port}`;
  const message = grpcClosed ? result.message : `${result.message}; openssl not found: its gRPC ports take any client`;
  return { ...result, message, endpoint, credentials, ports: live, dataDir: paths.dataDir };
}

/**
 * Stops the server (not running is success) and deletes the gRPC sockets weed leaves in /tmp;
 * with `removeData` also deletes the data dir, i.e. every bucket and object.
 */
export async function stopSeaweedServer(options: {
  stateDir: string;
  stopGraceMs?: number;
  removeData?: boolean;
}): Promise<ServiceStopResult> {
  const result = await stopService({
    name: SEAWEED_SERVICE_NAME,
    stateDir: options.stateDir,
    stopGraceMs: options.stopGraceMs ?? DEFAULT_SEAWEED_STOP_GRACE_MS,
  });
  removeGrpcSockets(options.stateDir);
  if (options.removeData === true) fs.rmSync(seaweedPaths(options.stateDir).dataDir, { recursive: true, force: true });
  return result;
}
