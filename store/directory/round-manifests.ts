/**
 * Reading a page file's round manifests while the source still writes them, for a destination that
 * prefetches during pre-copy. A manifest gets its name by rename once it is whole and durable
 * (durable-file.ts), so one that is listed can be read in full. Each round manifest lists every page
 * the file held durably when it was written, so the newest one alone says what the file holds. A
 * source may also rewrite the manifest of a round under way as more of it becomes durable: a stamp
 * (name, inode, modification time, size) tells a reader that the newest manifest changed.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PageStoreError } from '../errors';
import { decodeManifest } from '../manifest-format';
import type { NewestRoundManifest } from '../page-store';

/** What this reads of a page file on a directory. */
interface DirectoryFile {
  dir: string;
  header: { migrationId: string };
}

/** Names that page-file.ts gives round manifests (`manifest-00007.bin`); the final one does not match. */
const ROUND_MANIFEST_NAME = /^manifest-(\d+)\.bin$/;

/** Round and file name of the newest round manifest in the page file's folder (round -1 while there is none). */
async function newestRoundManifest(pageFile: DirectoryFile): Promise<{ round: number; name: string }> {
  let newest = { round: -1, name: '' };
  for (const name of await fs.readdir(pageFile.dir)) {
    const match = ROUND_MANIFEST_NAME.exec(name);
    if (match && Number(match[1]) > newest.round) newest = { round: Number(match[1]), name };
  }
  return newest;
}

/**
 * The newest round manifest of `pageFile`, unless there is none yet or its stamp is `seenStamp`
 * (then undefined, without reading it). Throws PageStoreError if it cannot be read or fails its
 * checksum.
 */
export async function readNewestRoundManifest(
  pageFile: DirectoryFile,
  seenStamp?: string,
): Promise<NewestRoundManifest | undefined> {
  let file = pageFile.dir;
  try {
    const { round, name } = await newestRoundManifest(pageFile);
    if (round < 0) return undefined;
    file = path.join(pageFile.dir, name);
    // Each manifest is a new file renamed into place: a new inode, most often, and a new mtime.
    const { ino, mtimeMs, size } = await fs.stat(file);
    const stamp = `${name}@${ino}:${mtimeMs}:${size}`;
    if (stamp === seenStamp) return undefined;
    // Replaced between the stat and the read, the manifest is passed once more under its new stamp.
    return { manifest: decodeManifest(await fs.readFile(file)), stamp };
  } catch (err) {
    throw new PageStoreError('cannot read the newest round manifest', {
      migrationId: pageFile.header.migrationId,
      path: file,
      cause: err,
    });
  }
}
