/**
 * Writing a small file so that it is on disk, complete, before the caller goes on: written aside,
 * fdatasync'ed, renamed into place, then the folder fsync'ed so the name itself is durable. A
 * reader sees the old file or the whole new one, never a part. The store's manifests, completion
 * mark, mailbox messages and VM history are written this way, readable by the owner only (files
 * 0600, folders created 0700, whatever the umask).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { makePrivateDir, PRIVATE_FILE_MODE } from './safe-path';

/** Durably replaces `file` with `data`; creates its folder if needed. */
export async function writeFileDurably(file: string, data: string | Uint8Array): Promise<void> {
  await makePrivateDir(path.dirname(file));
  const tmp = `${file}.${process.pid}.tmp`;
  const handle = await fs.open(tmp, 'w', PRIVATE_FILE_MODE);
  try {
    await handle.chmod(PRIVATE_FILE_MODE);
    await handle.writeFile(data);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmp, file);
  await syncDir(path.dirname(file));
}

/** fsyncs folder `dir`, so that names created or removed in it are durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
