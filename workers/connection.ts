/**
 * Connects a worker process to the Temporal service named by the environment, and says how the
 * host's VMMs reach nats-server.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NativeConnection } from '@temporalio/worker';
import type { NatsClientConfig } from '../data-plane/nats-client';
import { ferryEnvironment, type FerryEnvironment } from '../temporal-config';

/** Opens a worker connection, retrying for `timeoutMs` while the server starts. */
export async function connectWorker(timeoutMs = 30_000): Promise<NativeConnection> {
  const { temporalAddress } = ferryEnvironment();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await NativeConnection.connect({ address: temporalAddress });
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`cannot reach the Temporal service at ${temporalAddress}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Reads `--name value` from argv. */
export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/**
 * NATS client settings of host `hostId` under `env`: its credentials file
 * `<natsCredentialsDir>/<hostId>.json` when there is one (without it the VMMs connect
 * anonymously, which a nats-server with authorization refuses), and the TLS CA when set.
 */
export function hostNatsConfig(env: FerryEnvironment, hostId: string): NatsClientConfig {
  const credentialsFile = path.join(env.natsCredentialsDir, `${hostId}.json`);
  const hasCredentials = fs.existsSync(credentialsFile);
  if (!hasCredentials)
    console.log(`no NATS credentials for host ${hostId} at ${credentialsFile}: connecting anonymously`);
  return {
    url: env.natsUrl,
    ...(hasCredentials ? { credentialsFile } : {}),
    ...(env.natsTls ? { tlsCaFile: env.natsTls.caFile } : {}),
  };
}
