/**
 * Readiness of the embedded SeaweedFS server: its S3 gateway accepts a signed request, and its
 * master knows the volume server. The gateway opens its port before the volume server has
 * registered after a restart, and a GET in that gap fails with InternalError ("volume not found").
 */
import * as http from 'node:http';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { LOOPBACK_HOST } from './ports';
import type { S3Credentials } from './seaweedfs-files';

/** Whether the master at `masterPort` has a volume server registered (GET /dir/status). */
function masterHasVolumeServer(masterPort: number): Promise<boolean> {
  type DirStatus = { Topology?: { DataCenters?: { Racks?: { DataNodes?: unknown[] }[] }[] } };
  return new Promise((resolve, reject) => {
    const url = `http://${LOOPBACK_HOST}:${masterPort}/dir/status`;
    const request = http.get(url, { agent: false, timeout: 2_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        try {
          const racks = ((JSON.parse(body) as DirStatus).Topology?.DataCenters ?? []).flatMap((dc) => dc.Racks ?? []);
          resolve(racks.some((rack) => (rack.DataNodes?.length ?? 0) > 0));
        } catch (error) {
          reject(new Error(`master ${url} answered ${response.statusCode ?? '?'} with no topology`, { cause: error }));
        }
      });
    });
    request.once('timeout', () => request.destroy(new Error(`master ${url} did not answer within 2000 ms`)));
    request.once('error', reject);
  });
}

/**
 * Resolves once the gateway at `endpoint` answers a ListBuckets signed with `credentials` and the
 * master at `masterPort` knows its volume server; retries until `timeoutMs`, then throws with the
 * last error's message and the error as `cause`.
 */
export async function waitForS3Gateway(
  endpoint: string,
  masterPort: number,
  credentials: S3Credentials,
  region: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const client = new S3Client({
    endpoint,
    region,
    // A copy: the SDK writes bookkeeping fields into the credentials object it is given.
    credentials: { ...credentials },
    forcePathStyle: true,
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 1_000, requestTimeout: 2_000 },
  });
  let lastError: unknown;
  try {
    do {
      try {
        await client.send(new ListBucketsCommand({}));
        if (await masterHasVolumeServer(masterPort)) return;
        lastError = new Error(`no volume server registered at master port ${masterPort} yet`);
      } catch (error) {
        lastError = error;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    } while (Date.now() < deadline);
  } finally {
    client.destroy();
  }
  const why = lastError instanceof Error ? `${lastError.name}: ${lastError.message}` : String(lastError);
  throw new Error(`S3 gateway ${endpoint} not usable within ${timeoutMs} ms: ${why}`, { cause: lastError });
}
