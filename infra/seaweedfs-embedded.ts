/**
 * The SeaweedFS server of `ferry up --store s3`: one `weed server` (seaweedfs.ts) under the state
 * dir, its S3 gateway on the port of FERRY_S3_ENDPOINT, accepting only the key of FERRY_S3_*, with
 * the bucket of the embedded store created. Its data stays in `<stateDir>/seaweedfs/data` across
 * `ferry down`, as the other services keep their state. Starting it again while it runs checks
 * that it still serves that port and key, and leaves it.
 */
import type { S3Environment } from '../temporal-config';
import { EmbeddedS3EndpointError } from './cluster-store';
import { isPortFree, pickFreePort } from './ports';
import { startSeaweedServer, stopSeaweedServer } from './seaweedfs';
import { createBucket } from './seaweedfs-bucket';
import type { SeaweedPorts } from './seaweedfs-files';
import { readStoredCredentials, SEAWEED_PORT_NAMES, SEAWEED_SERVICE_NAME, seaweedPaths } from './seaweedfs-files';
import { serviceStatus } from './service';

/**
 * The seven internal ports for a gateway on `s3Port`: `s3Port` + 1..7 in SEAWEED_PORT_NAMES order
 * (8334..8340 for the default 8333) where free, else a port the kernel picks, so that a server on a
 * random port (a test's) does not fail on a busy neighbour.
 */
export async function embeddedSeaweedPorts(s3Port: number): Promise<Omit<SeaweedPorts, 's3'>> {
  const ports: Partial<SeaweedPorts> = {};
  const taken = new Set([s3Port]);
  for (const [index, name] of SEAWEED_PORT_NAMES.entries()) {
    if (name === 's3') continue;
    const preferred = s3Port + index;
    let port = preferred <= 65535 && (await isPortFree(preferred)) ? preferred : await pickFreePort();
    while (taken.has(port)) port = await pickFreePort();
    taken.add(port);
    ports[name] = port;
  }
  return ports as Omit<SeaweedPorts, 's3'>;
}

/** Refuses a running server that another port or key was given to: the hosts could not use it. */
function assertRunningServerFits(stateDir: string, s3: S3Environment): void {
  const status = serviceStatus({ name: SEAWEED_SERVICE_NAME, stateDir });
  if (status === undefined) return;
  const stored = readStoredCredentials(seaweedPaths(stateDir).identitiesFile);
  const why =
    status.port !== s3.port
      ? `its S3 gateway listens on port ${status.port}, not on ${s3.port} of FERRY_S3_ENDPOINT`
      : stored !== undefined && (stored.accessKeyId !== s3.accessKeyId || stored.secretAccessKey !== s3.secretAccessKey)
        ? `it accepts the access key ${stored.accessKeyId}, not ${s3.accessKeyId} of FERRY_S3_ACCESS_KEY_ID/FERRY_S3_SECRET_ACCESS_KEY`
        : undefined;
  if (why !== undefined)
    throw new EmbeddedS3EndpointError(
      `SeaweedFS of ${stateDir} already runs (pid ${status.pid}) but ${why}; run \`ferry down\` first`,
    );
}

/**
 * Starts the server unless it runs (about 5 s; 60 s at most), then creates `bucket` unless it
 * exists; returns one line for the user. Throws EmbeddedS3EndpointError for a running server on
 * another port or key, and the errors of startSeaweedServer (PortInUseError, ServiceStartError).
 */
export async function startEmbeddedSeaweed(stateDir: string, s3: S3Environment, bucket: string): Promise<string> {
  assertRunningServerFits(stateDir, s3);
  const running = embeddedSeaweedRunning(stateDir);
  const credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
  const started = await startSeaweedServer({
    stateDir,
    port: s3.port,
    ...(running ? {} : { internalPorts: await embeddedSeaweedPorts(s3.port) }),
    credentials,
    region: s3.region,
  });
  await createBucket({ endpoint: started.endpoint, region: s3.region, ...credentials }, bucket);
  return `${started.message}; S3 ${started.endpoint}, bucket ${bucket}`;
}

/** Whether the server of `stateDir` runs. */
export function embeddedSeaweedRunning(stateDir: string): boolean {
  return serviceStatus({ name: SEAWEED_SERVICE_NAME, stateDir }) !== undefined;
}

/** Stops the server if it runs (its filer takes about 15 s to drain) and keeps its data; one line, or none. */
export async function stopEmbeddedSeaweed(stateDir: string): Promise<string | undefined> {
  if (!embeddedSeaweedRunning(stateDir)) return undefined;
  return (await stopSeaweedServer({ stateDir })).message;
}
