/**
 * Writes a cpio archive in the "newc" format (SVR4 without CRC), the format the Linux kernel
 * unpacks as an initramfs, so building the guest's initramfs needs no `cpio` binary. Pure: entries
 * in, bytes out. Device nodes can be written without privileges (they are just headers), which is
 * how the guest gets its /dev/console.
 *
 * Layout per entry: a 110-byte ASCII header ("070701" and thirteen 8-digit hex fields), the NUL-
 * terminated name padded to a multiple of 4 bytes, then the data padded to a multiple of 4 bytes.
 * The archive ends with the entry named "TRAILER!!!".
 */

/** One member of the archive. Paths are relative, without a leading slash (`bin/busybox`). */
export type NewcEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Buffer; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char-device'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const HEADER_BYTES = 110;
const TRAILER = 'TRAILER!!!';

/** Default permission bits: 0755 for directories, 0644 for files, 0600 for device nodes. */
export const DEFAULT_NEWC_DIR_MODE = 0o755;
/** See DEFAULT_NEWC_DIR_MODE. */
export const DEFAULT_NEWC_FILE_MODE = 0o644;
/** See DEFAULT_NEWC_DIR_MODE. */
export const DEFAULT_NEWC_DEVICE_MODE = 0o600;

function pad4(length: number): number {
  return (4 - (length % 4)) % 4;
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0');
}

interface RawEntry {
  name: string;
  mode: number;
  nlink: number;
  data: Buffer;
  rdevMajor: number;
  rdevMinor: number;
}

function rawEntry(entry: NewcEntry): RawEntry {
  if (entry.path === '' || entry.path.startsWith('/') || entry.path.split('/').includes('..'))
    throw new Error(`newc entry path must be relative and stay inside the archive, got ${JSON.stringify(entry.path)}`);
  const base = { name: entry.path, nlink: 1, data: Buffer.alloc(0), rdevMajor: 0, rdevMinor: 0 };
  switch (entry.type) {
    case 'dir':
      return { ...base, nlink: 2, mode: S_IFDIR | (entry.mode ?? DEFAULT_NEWC_DIR_MODE) };
    case 'file':
      return { ...base, data: entry.data, mode: S_IFREG | (entry.mode ?? DEFAULT_NEWC_FILE_MODE) };
    case 'symlink':
      return { ...base, data: Buffer.from(entry.target), mode: S_IFLNK | 0o777 };
    case 'char-device':
      return {
        ...base,
        mode: S_IFCHR | (entry.mode ?? DEFAULT_NEWC_DEVICE_MODE),
        rdevMajor: entry.major,
        rdevMinor: entry.minor,
      };
  }
}

function encodeEntry(entry: RawEntry, ino: number): Buffer[] {
  const name = Buffer.from(`${entry.name}\0`);
  const fields = [
    ino,
    entry.mode,
    0, // uid: root
    0, // gid: root
    entry.nlink,
    0, // mtime: fixed, so the same inputs give the same bytes
    entry.data.length,
    0,
    0,
    entry.rdevMajor,
    entry.rdevMinor,
    name.length,
    0, // check: unused by newc
  ];
  const header = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
  return [
    header,
    name,
    Buffer.alloc(pad4(HEADER_BYTES + name.length)),
    entry.data,
    Buffer.alloc(pad4(entry.data.length)),
  ];
}

/**
 * The archive holding `entries` in the given order (a directory must come before what it holds),
 * owned by root, with mtime 0: the same entries always give the same bytes.
 * Throws when a path is absolute, empty or climbs out with `..`.
 */
export function encodeNewcArchive(entries: readonly NewcEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((entry, i) => parts.push(...encodeEntry(rawEntry(entry), i + 1)));
  parts.push(
    ...encodeEntry({ name: TRAILER, mode: 0, nlink: 1, data: Buffer.alloc(0), rdevMajor: 0, rdevMinor: 0 }, 0),
  );
  return Buffer.concat(parts);
}
