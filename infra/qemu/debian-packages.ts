/**
 * The Debian packages the guest image is made of, read without installing them: the candidate
 * version apt would pick, the versioned kernel package behind the `linux-image-amd64` metapackage,
 * `apt-get download` into a folder, and `dpkg-deb --fsys-tarfile | tar` to unpack chosen members.
 * Needs package lists that know the packages (infra/qemu/setup-qemu.sh runs apt-get update).
 */
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { GuestImageError } from './errors';

const execFileAsync = promisify(execFile);

/** A package at the exact version the image is built from. */
export interface DebianPackage {
  name: string;
  version: string;
}

async function run(step: string, file: string, args: readonly string[], cwd?: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync(file, args, {
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, LC_ALL: 'C' },
      ...(cwd ? { cwd } : {}),
    });
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new GuestImageError(
      step,
      `${stderr || (error as Error).message}; run infra/qemu/setup-qemu.sh (it refreshes the package lists)`,
      { cause: error },
    );
  }
}

/**
 * The versions `apt-get install` would take of each of `names`, in their order, asked of apt in one
 * call (each call reads apt's whole cache, ~0.5 s here). Throws GuestImageError naming a package
 * apt knows no candidate of.
 */
export async function candidateVersions(names: readonly string[]): Promise<DebianPackage[]> {
  const step = `apt-cache policy ${names.join(' ')}`;
  const out = await run(step, 'apt-cache', ['policy', ...names]);
  // One block per known package, headed by its name at the line start: "busybox-static:".
  const blocks = new Map<string, string>();
  for (const block of out.split(/^(?=\S+:$)/m)) {
    const name = /^(\S+):$/m.exec(block)?.[1];
    if (name !== undefined) blocks.set(name, block);
  }
  return names.map((name) => {
    const version = /^\s*Candidate:\s*(\S+)/m.exec(blocks.get(name) ?? '')?.[1];
    if (version === undefined || version === '(none)')
      throw new GuestImageError(step, `no candidate version of ${name}; run infra/qemu/setup-qemu.sh`);
    return { name, version };
  });
}

/**
 * The versioned kernel package (`linux-image-6.1.0-NN-amd64`) that the candidate of the
 * `linux-image-amd64` metapackage depends on (its name only; candidateVersions gives the version).
 */
export async function kernelPackageName(metapackage = 'linux-image-amd64'): Promise<string> {
  const out = await run(`apt-cache depends ${metapackage}`, 'apt-cache', ['depends', metapackage]);
  const name = /^\s*Depends:\s*(linux-image-\S+)/m.exec(out)?.[1];
  if (name === undefined)
    throw new GuestImageError(`apt-cache depends ${metapackage}`, `no linux-image dependency in: ${out.trim()}`);
  return name;
}

/** Downloads `pkg` (that exact version) into `dir` and returns the path of its .deb. */
export async function downloadPackage(pkg: DebianPackage, dir: string): Promise<string> {
  const before = new Set(fs.readdirSync(dir));
  // As root apt drops to the _apt user, which cannot write a private folder: the warning it prints
  // is harmless, the download goes on unsandboxed.
  await run(`apt-get download ${pkg.name}`, 'apt-get', ['download', '-qq', `${pkg.name}=${pkg.version}`], dir);
  const deb = fs.readdirSync(dir).find((f) => !before.has(f) && f.startsWith(`${pkg.name}_`) && f.endsWith('.deb'));
  if (deb === undefined) throw new GuestImageError(`apt-get download ${pkg.name}`, `no .deb appeared in ${dir}`);
  return path.join(dir, deb);
}

/**
 * Unpacks the members of `deb` that match the tar wildcards `patterns` (e.g. `./boot/vmlinuz-*`)
 * into `destDir`, keeping their paths. Throws GuestImageError when dpkg-deb or tar fails or nothing
 * matched.
 */
export async function extractDebMembers(deb: string, destDir: string, patterns: readonly string[]): Promise<void> {
  const step = `dpkg-deb --fsys-tarfile ${path.basename(deb)} | tar -x`;
  await new Promise<void>((resolve, reject) => {
    const dpkg = spawn('dpkg-deb', ['--fsys-tarfile', deb], { stdio: ['ignore', 'pipe', 'pipe'] });
    const tar = spawn('tar', ['-x', '-C', destDir, '--wildcards', ...patterns], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    dpkg.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    tar.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    dpkg.stdout.pipe(tar.stdin);
    let pending = 2;
    let failed = false;
    const done = (who: string) => (code: number | null, signal: NodeJS.Signals | null) => {
      if (code !== 0 && !failed) {
        failed = true;
        reject(new GuestImageError(step, `${who} exited with ${code ?? signal}: ${stderr.trim()}`));
      }
      if (--pending === 0 && !failed) resolve();
    };
    dpkg.on('error', (e) => reject(new GuestImageError(step, e.message, { cause: e })));
    tar.on('error', (e) => reject(new GuestImageError(step, e.message, { cause: e })));
    dpkg.on('close', done('dpkg-deb'));
    tar.on('close', done('tar'));
  });
}
