/**
 * Where guest RAM files live: a folder of /dev/shm (tmpfs) that belongs to this user, mode 0700,
 * one file per QEMU named from the VM id, created 0600 and sized before QEMU maps it. /dev/shm is
 * writable by everyone, so a folder found there is used only if it is ours and private.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QemuProcessError } from './errors';

/** The default folder of RAM files for this user. */
export function defaultShmDir(): string {
  return path.join('/dev/shm', `ferry-${process.getuid?.() ?? 0}`);
}

function ensurePrivateDir(dir: string, vmId: string, logFile: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  const uid = process.getuid?.() ?? st.uid;
  // /dev/shm is writable by everyone: a folder someone else made there must not hold guest RAM.
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0)
    throw new QemuProcessError(
      vmId,
      'ram-file',
      `${dir} must be a directory owned by uid ${uid} with mode 0700 (found uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)}); remove it`,
      logFile,
    );
}

/**
 * Creates `<shmDir>/<vmId>-<8 hex>.ram` (0600, `sizeMib` MiB, sparse) after checking the folder;
 * returns its path. Throws QemuProcessError (`ram-file`) when the folder is not ours and private.
 */
export function createRamFile(shmDir: string, vmId: string, sizeMib: number, logFile: string): string {
  ensurePrivateDir(shmDir, vmId, logFile);
  const ramPath = path.join(shmDir, `${vmId}-${randomBytes(4).toString('hex')}.ram`);
  const fd = fs.openSync(ramPath, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_RDWR, 0o600);
  try {
    fs.ftruncateSync(fd, sizeMib * 1024 * 1024);
  } finally {
    fs.closeSync(fd);
  }
  return ramPath;
}
