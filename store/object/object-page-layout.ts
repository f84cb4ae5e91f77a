/**
 * Where the object page store keeps what, as keys inside an ObjectStore (the adapter adds its bucket
 * and prefix). One folder per migration, one folder per VM's ownership epochs:
 *
 * - `migrations/<id>/header.json` — the PageFileHeader;
 * - `migrations/<id>/chunks/<c, 8 digits>` — pages [CHUNK_PAGES·c, CHUNK_PAGES·(c+1)) back to back,
 *   page i at byte (i − CHUNK_PAGES·c)·4096; the last chunk stops at the page count. In a file
 *   sealed at rest (page-seal.ts) the chunk holds slots of SEALED_SLOT_BYTES in the same order;
 * - `migrations/<id>/manifests/round-<n, 5 digits>` and `migrations/<id>/manifests/final`;
 * - `migrations/<id>/complete` — the completion mark;
 * - `migrations/<id>/control/<name>.json` — mailbox messages;
 * - `owners/<vmId>/<epoch, 10 digits>.json` — ownership records;
 * - `probes/<unique>` — written and deleted by assertWritable.
 */
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';

/** Pages per chunk object: 256 pages, 1 MiB (see object-page-store.ts for why). */
export const CHUNK_PAGES = 256;
/** Bytes of a full chunk object. */
export const CHUNK_BYTES = CHUNK_PAGES * PAGE_SIZE_BYTES;

/** Folder (with trailing '/') of everything of one migration. */
export function migrationPrefix(migrationId: string): string {
  return `migrations/${migrationId}/`;
}

/** Key of the migration's header. */
export function headerKey(migrationId: string): string {
  return `${migrationPrefix(migrationId)}header.json`;
}

/** Key of chunk `chunk` of the migration. */
export function chunkKey(migrationId: string, chunk: number): string {
  return `${migrationPrefix(migrationId)}chunks/${String(chunk).padStart(8, '0')}`;
}

/** Prefix shared by the keys of every round manifest of the migration (not the final one). */
export function roundManifestPrefix(migrationId: string): string {
  return `${migrationPrefix(migrationId)}manifests/round-`;
}

/** Key of the manifest of round `round`, or of the final manifest. */
export function manifestKey(migrationId: string, manifest: { round: number; final: boolean }): string {
  if (manifest.final) return `${migrationPrefix(migrationId)}manifests/final`;
  return `${roundManifestPrefix(migrationId)}${String(manifest.round).padStart(5, '0')}`;
}

/** Key of the completion mark. */
export function completeKey(migrationId: string): string {
  return `${migrationPrefix(migrationId)}complete`;
}

/** Key of mailbox message `name`. */
export function messageKey(migrationId: string, name: string): string {
  return `${migrationPrefix(migrationId)}control/${name}.json`;
}

/** Folder (with trailing '/') of the VM's ownership records. */
export function ownersPrefix(vmId: string): string {
  return `owners/${vmId}/`;
}

/** Key of the VM's ownership record of epoch `epoch`; names sort in epoch order. */
export function ownerKey(vmId: string, epoch: number): string {
  return `${ownersPrefix(vmId)}${String(epoch).padStart(10, '0')}.json`;
}

/** Epoch of an ownership record key, or undefined for another key. */
export function epochOfOwnerKey(key: string): number | undefined {
  const match = /\/(\d{10})\.json$/.exec(key);
  return match ? Number(match[1]) : undefined;
}

/** Number of chunks that hold `pageCount` pages. */
export function chunkCountOf(pageCount: number): number {
  return Math.ceil(pageCount / CHUNK_PAGES);
}

/** Pages held by chunk `chunk` of a file of `pageCount` pages (CHUNK_PAGES except for the last). */
export function pagesInChunk(chunk: number, pageCount: number): number {
  return Math.min(CHUNK_PAGES, pageCount - chunk * CHUNK_PAGES);
}
