/**
 * The per-migration key that authenticates every message of a migration (message-auth.ts).
 *
 * Each host agent holds the cluster secret: 32 random bytes in a 0600 file (FERRY_CLUSTER_SECRET_FILE,
 * default `<stateDir>/cluster.key`). The first process that needs it and finds none creates it with
 * O_EXCL, so every process sharing the state directory agrees; hosts on other machines get a copy
 * distributed like their NATS credentials. The source's prepare draws a random nonce that travels
 * in the workflow (it is worthless without the secret); each agent derives
 * `key = HKDF-SHA256(secret, salt = nonce, info = migrationId)` and hands it to its VMM over the
 * local control socket. The key itself never appears in Temporal history or in a log.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hkdfSync, randomBytes } from 'node:crypto';
import { ClusterSecretError } from './errors';

/** Length of the cluster secret and of a migration key (bytes). */
export const MIGRATION_KEY_BYTES = 32;
/** Length of the nonce a migration's key is derived with (bytes, before base64url). */
export const KEY_NONCE_BYTES = 16;

/** A fresh nonce for one migration's key (base64url, no padding). */
export function newKeyNonce(): string {
  return randomBytes(KEY_NONCE_BYTES).toString('base64url');
}

/**
 * The key of migration `migrationId`: HKDF-SHA256 of the cluster secret, salted with the
 * migration's nonce (base64url). Throws ClusterSecretError if the nonce is not KEY_NONCE_BYTES long.
 */
export function deriveMigrationKey(secret: Buffer, nonce: string, migrationId: string): Buffer {
  // A workflow started before keys existed passes no nonce.
  const salt = typeof nonce === 'string' ? Buffer.from(nonce, 'base64url') : Buffer.alloc(0);
  if (salt.length !== KEY_NONCE_BYTES)
    throw new ClusterSecretError(`the key nonce of migration ${migrationId} must be ${KEY_NONCE_BYTES} bytes`);
  return Buffer.from(hkdfSync('sha256', secret, salt, Buffer.from(migrationId, 'utf8'), MIGRATION_KEY_BYTES));
}

/**
 * Reads the cluster secret from `file`, creating it (0600, in a 0700 directory; linked into place, so a
 * process that loses the race reads the winner's) if it does
 * not exist yet. Throws ClusterSecretError if the file is shorter than MIGRATION_KEY_BYTES or
 * readable by anyone but its owner.
 */
export function loadClusterSecret(file: string): Buffer {
  if (!fs.existsSync(file)) createClusterSecret(file);
  let secret: Buffer;
  let mode: number;
  try {
    secret = fs.readFileSync(file);
    mode = fs.statSync(file).mode;
  } catch (err) {
    throw new ClusterSecretError(`cannot read the cluster secret ${file}`, { cause: err });
  }
  if ((mode & 0o077) !== 0)
    throw new ClusterSecretError(
      `the cluster secret ${file} is readable by others (mode ${(mode & 0o777).toString(8)}): chmod 600 it`,
    );
  if (secret.length < MIGRATION_KEY_BYTES)
    throw new ClusterSecretError(
      `the cluster secret ${file} holds ${secret.length} bytes, fewer than ${MIGRATION_KEY_BYTES}`,
    );
  return secret;
}

/** Creates the cluster secret at `file` unless some process has just done so. */
function createClusterSecret(file: string): void {
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    // Written whole under a private name, then linked into place: link() fails if the file exists,
    // so a process that loses the race reads the winner's secret, never a half-written one.
    const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    try {
      fs.writeSync(fd, randomBytes(MIGRATION_KEY_BYTES));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(temp, file);
    } finally {
      fs.rmSync(temp, { force: true });
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new ClusterSecretError(`cannot create the cluster secret ${file}`, { cause: err });
  }
}
