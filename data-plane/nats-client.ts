/**
 * How a VMM connects to nats-server for one migration: the server's URL, the host's credentials
 * file and the TLS files, all handed in by the host agent (the VMM reads no environment). The
 * password never travels in a request: the VMM reads it from the host's 0600 credentials file.
 * Replies to the host's requests arrive under the host's own inbox prefix (subjects.ts), the only
 * inboxes its credentials let it subscribe to.
 */
import * as fs from 'node:fs';
import type { ConnectionOptions, NatsConnection } from 'nats';
import type { NatsClientConfig } from '../model/protocol';
import { connectCounted } from './nats-connections';
import { hostInboxPrefix } from './subjects';

export type { NatsClientConfig } from '../model/protocol';

/** One host's NATS user, as kept in its credentials file (mode 0600). */
export interface NatsHostCredentials {
  hostId: string;
  user: string;
  password: string;
}

/** The credentials file is missing, unreadable or not what it should be. */
export class NatsCredentialsError extends Error {
  override readonly name = 'NatsCredentialsError';

  constructor(
    readonly file: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`NATS credentials file ${file} cannot be used: ${detail}`, options);
  }
}

/** Reads and checks a credentials file. Throws NatsCredentialsError. */
export function readNatsCredentials(file: string): NatsHostCredentials {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new NatsCredentialsError(file, (err as Error).message, { cause: err });
  }
  const c = parsed as Partial<NatsHostCredentials> | null;
  if (typeof c?.hostId !== 'string' || typeof c.user !== 'string' || typeof c.password !== 'string')
    throw new NatsCredentialsError(file, 'expected {"hostId", "user", "password"} strings');
  return { hostId: c.hostId, user: c.user, password: c.password };
}

/**
 * nats.js options for `hostId` under `config`. Throws NatsCredentialsError when the credentials
 * file names another host.
 */
export function natsConnectionOptions(config: NatsClientConfig, hostId: string, name: string): ConnectionOptions {
  const options: ConnectionOptions = {
    servers: config.url,
    name,
    maxReconnectAttempts: -1,
    inboxPrefix: hostInboxPrefix(hostId),
  };
  if (config.credentialsFile !== undefined) {
    const credentials = readNatsCredentials(config.credentialsFile);
    if (credentials.hostId !== hostId)
      throw new NatsCredentialsError(config.credentialsFile, `it is host ${credentials.hostId}'s, not ${hostId}'s`);
    options.user = credentials.user;
    options.pass = credentials.password;
  }
  if (config.tlsCaFile !== undefined) options.tls = { caFile: config.tlsCaFile };
  return options;
}

/**
 * Connects `hostId` to nats-server as `config` says; `name` shows in the server's connection list.
 * Errors the server reports later (a permission violation: a subject the host's grants lack) go to
 * `log`. Throws what nats.js throws when the first connection fails (e.g. `AUTHORIZATION_VIOLATION`).
 */
export async function connectNats(
  config: NatsClientConfig,
  hostId: string,
  name: string,
  log?: (msg: string) => void,
): Promise<NatsConnection> {
  const nc = await connectCounted(natsConnectionOptions(config, hostId, name));
  if (log !== undefined) {
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type === 'error') log(`NATS error on ${name}: ${String(status.data)}`);
      }
    })().catch(() => undefined);
  }
  return nc;
}
