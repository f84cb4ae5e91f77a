/**
 * A QEMU guest's RAM file mapped into this process, through the small native module
 * native/ram-map.c: the engine then compares, reads and writes guest memory in place, where
 * read(2)/write(2) copied every byte once more (a scan of 1 GiB took 0.22-0.33 s on two threads
 * through reads, 64-123 ms through the mapping with the guest running; the destination spent
 * 1.4 s per GiB in one write(2) per page).
 *
 * The module is compiled on first use with gcc and the N-API headers of the Node that runs ferry
 * (its wheel ships them), into `<repo>/.ferry/native/`, under a name that hashes its source, so an
 * edit rebuilds it and concurrent builders never see a half-written file. Where it cannot be built
 * or loaded (no gcc, no headers), `loadRamMap` says why and the guest falls back to reads and
 * writes (qemu-guest-pages.ts); nothing else changes.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../../temporal-config/environment';

/** What the native module exports. */
interface RamMapModule {
  mapFile(fd: number, length: number, writable: boolean): ArrayBuffer;
}

/** Maps `length` bytes of the open file `fd` (shared; writable or not) as a Buffer over the mapping. */
export type MapRamFile = (fd: number, length: number, writable: boolean) => Buffer;

let loaded: MapRamFile | Error | undefined;

/** The module's C source in the repository. */
function sourcePath(): string {
  return path.join(projectRoot(), 'vmm', 'qemu', 'native', 'ram-map.c');
}

/** The folder holding node_api.h for the running Node, if there is one. */
export function napiIncludeDir(): string | undefined {
  const candidates = [
    path.resolve(fs.realpathSync(process.execPath), '..', '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ];
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'node_api.h')));
}

/**
 * Builds the native module unless a build of its current source exists; returns its path. Throws
 * an Error saying what is missing (gcc, the headers) or what gcc said.
 */
export function buildRamMapModule(): string {
  const source = sourcePath();
  const key = createHash('sha256').update(fs.readFileSync(source)).digest('hex').slice(0, 16);
  const dir = path.join(projectRoot(), '.ferry', 'native');
  const target = path.join(dir, `ram-map-${key}.node`);
  if (fs.existsSync(target)) return target;
  const include = napiIncludeDir();
  if (include === undefined) throw new Error(`no node_api.h found for ${process.execPath}`);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `.ram-map-${key}-${process.pid}-${randomBytes(4).toString('hex')}.node`);
  try {
    execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-I', include, '-o', tmp, source], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    fs.renameSync(tmp, target);
  } catch (error) {
    fs.rmSync(tmp, { force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`building ${source} failed: ${stderr || (error as Error).message}`, { cause: error });
  }
  return target;
}

/**
 * The mapping function, building and loading the native module on first call (once per thread);
 * an Error saying why when it cannot be had here.
 */
export function loadRamMap(): MapRamFile | Error {
  if (loaded !== undefined) return loaded;
  try {
    const file = buildRamMapModule();
    const module = { exports: {} as RamMapModule };
    process.dlopen(module, file);
    const native = module.exports;
    loaded = (fd, length, writable) => Buffer.from(native.mapFile(fd, length, writable));
  } catch (error) {
    loaded = error instanceof Error ? error : new Error(String(error));
  }
  return loaded;
}
