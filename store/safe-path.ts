/**
 * Paths derived from ids and inputs stay under their root: a VM record under the host's VM folder,
 * a migration's files under the store's `migrations/`, an ownership record under `owners/`, a dump
 * under the dumps folder. Every such path is built by `pathUnder`, which resolves it and refuses
 * one that climbs out (`../`, an absolute path elsewhere) or that is the root itself (an empty or
 * `.` id, whose removal would take the whole folder). Ids are also checked against one pattern
 * where they enter (vm-spec.ts); this is the second wall, below it.
 *
 * The check is lexical: it does not follow symbolic links, so a link planted inside a root by
 * someone who can already write there is not caught.
 *
 * Also here: the modes of what the directory store and the host state create (owner only), set
 * explicitly so that no umask widens or narrows them.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PathEscapeError, StoreNotAllowedError } from './errors';

/** Mode of every file the directory store, VM records and dumps create: read and write by the owner only. */
export const PRIVATE_FILE_MODE = 0o600;
/** Mode of every folder they create: the owner only. */
export const PRIVATE_DIR_MODE = 0o700;

/** True if `child` (absolute, resolved) is `root` or inside it. */
function within(root: string, child: string): boolean {
  const relative = path.relative(root, child);
  return relative === '' || (relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}

/**
 * `name` resolved against `root`, if it lies strictly inside `root`; else throws PathEscapeError
 * naming `what` (e.g. 'vmId'). An absolute `name` inside `root` is accepted as is.
 */
export function pathUnder(root: string, name: string, what = 'name'): string {
  const base = path.resolve(root);
  if (typeof name !== 'string' || name.includes('\0')) throw new PathEscapeError(base, String(name), what);
  const full = path.resolve(base, name);
  if (full === base || !within(base, full)) throw new PathEscapeError(base, name, what);
  return full;
}

/**
 * Checks that directory store `dir` is one of `allowedRoots` or under one; returns it resolved.
 * Throws StoreNotAllowedError listing the roots.
 */
export function assertStoreDirAllowed(dir: string, allowedRoots: readonly string[]): string {
  const resolved = path.resolve(dir);
  if (allowedRoots.some((root) => within(path.resolve(root), resolved))) return resolved;
  throw new StoreNotAllowedError(
    resolved,
    allowedRoots.map((root) => path.resolve(root)),
  );
}

/**
 * Creates `dir` and any missing parents with PRIVATE_DIR_MODE, whatever the umask; folders that
 * existed keep their mode.
 */
export async function makePrivateDir(dir: string): Promise<void> {
  const first = await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (first === undefined) return;
  for (let made = path.resolve(dir); ; made = path.dirname(made)) {
    await fs.chmod(made, PRIVATE_DIR_MODE);
    if (made === path.resolve(first) || made === path.dirname(made)) return;
  }
}
