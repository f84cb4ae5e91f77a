/**
 * A small mailbox in the migration's store folder, for control messages between the two hosts when
 * the network lane is down (the shared file "can also carry the hosts' control messages"). A
 * message is a JSON file under `control/`, written durably (durable-file.ts), so a reader sees
 * either nothing or the whole message. Posting the same message again replaces it (idempotent).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { migrationDir } from './page-file';
import { writeFileDurably } from '../durable-file';
import { PageStoreError } from '../errors';
import { pathUnder } from '../safe-path';

function messageFile(storeDir: string, migrationId: string, name: string): string {
  return pathUnder(path.join(migrationDir(storeDir, migrationId), 'control'), `${name}.json`, 'message name');
}

/** Durably posts `body` as message `name` of the migration. */
export async function postMessage(storeDir: string, migrationId: string, name: string, body: unknown): Promise<void> {
  // A late message must not bring back the folder of a migration that was cleaned up.
  const dir = migrationDir(storeDir, migrationId);
  await fs.access(dir).catch((err: unknown) => {
    throw new PageStoreError(`cannot post ${name}: the migration's folder is gone`, {
      migrationId,
      path: dir,
      cause: err,
    });
  });
  await writeFileDurably(messageFile(storeDir, migrationId, name), JSON.stringify(body));
}

/** Message `name` if it has been posted, else undefined. */
export async function readMessage<T>(storeDir: string, migrationId: string, name: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(messageFile(storeDir, migrationId, name), 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
