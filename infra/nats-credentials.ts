/**
 * Per-host NATS credentials: one user with a random password per host, kept one file per host
 * (`<dir>/<hostId>.json`, mode 0600, the folder 0700), and the `authorization` block of
 * nats-server's configuration that grants each host only its role's subjects (data-plane/subjects.ts).
 *
 * `ensureNatsCredentials` is idempotent: a host that has its file keeps it, so host agents and
 * VMMs already running stay valid; only missing hosts get a new user.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readNatsCredentials, type NatsHostCredentials } from '../data-plane/nats-client';
import { assertSubjectToken, hostSubjectGrants, type SubjectGrants } from '../data-plane/subjects';
import { writePrivateFile } from './private-files';

/** Random bytes in a generated password (base64url-encoded: 32 characters). */
export const NATS_PASSWORD_BYTES = 24;

/** One user of nats-server; without `permissions` it may publish and subscribe to everything. */
export interface NatsUser {
  user: string;
  password: string;
  permissions?: SubjectGrants;
}

/** New credentials of `hostId`. Throws SubjectTokenError when the id cannot be a subject token. */
export function generateNatsCredentials(hostId: string): NatsHostCredentials {
  assertSubjectToken('host id', hostId);
  return { hostId, user: `host-${hostId}`, password: randomBytes(NATS_PASSWORD_BYTES).toString('base64url') };
}

/** Path of `hostId`'s credentials file in `dir`. */
export function natsCredentialsFile(dir: string, hostId: string): string {
  return path.join(dir, `${hostId}.json`);
}

/**
 * The credentials of every host in `hosts`, reading the files in `dir` and generating (and
 * writing) those missing. Throws NatsCredentialsError for a file that exists but is unusable.
 */
export function ensureNatsCredentials(dir: string, hosts: readonly string[]): NatsHostCredentials[] {
  return hosts.map((hostId) => {
    const file = natsCredentialsFile(dir, hostId);
    if (fs.existsSync(file)) return readNatsCredentials(file);
    const credentials = generateNatsCredentials(hostId);
    writePrivateFile(file, `${JSON.stringify(credentials, null, 2)}\n`);
    return credentials;
  });
}

/** Every host's credentials in `dir` (each `*.json` file), e.g. to configure the server. */
export function readAllNatsCredentials(dir: string): NatsHostCredentials[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => readNatsCredentials(path.join(dir, f)));
}

/** nats-server users for `credentials`, each limited to its host's grants. */
export function hostNatsUsers(credentials: readonly NatsHostCredentials[]): NatsUser[] {
  return credentials.map((c) => ({ user: c.user, password: c.password, permissions: hostSubjectGrants(c.hostId) }));
}

function permissionsConfig(grants: SubjectGrants): string {
  const list = (subjects: string[]): string => `[${subjects.map((s) => JSON.stringify(s)).join(', ')}]`;
  return [
    `permissions: {`,
    `      publish: { allow: ${list(grants.publish)} }`,
    `      subscribe: { allow: ${list(grants.subscribe)} }`,
    ...(grants.allowResponses ? ['      allow_responses: true'] : []),
    '    }',
  ].join('\n');
}

/** The `authorization` block of nats-server's configuration for `users`. */
export function natsAuthorizationConfig(users: readonly NatsUser[]): string {
  const entries = users.map((u) =>
    [
      '  {',
      `    user: ${JSON.stringify(u.user)}`,
      `    password: ${JSON.stringify(u.password)}`,
      ...(u.permissions ? [`    ${permissionsConfig(u.permissions)}`] : []),
      '  }',
    ].join('\n'),
  );
  return ['authorization {', '  users: [', ...entries, '  ]', '}'].join('\n');
}
