/**
 * Runs infra/qemu/setup-qemu.sh from Node: installs QEMU and refreshes package lists when needed
 * (silent and quick when the host is ready). Tests call prepareQemuHost() so they work from a bare
 * machine and skip, with the script's reason, only where QEMU cannot be installed.
 */
import { execFile, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../temporal-config/environment';
import { QemuSetupError } from './errors';
import { buildGuestImage, type GuestImage, type GuestImageOptions } from './guest-image';

const execFileAsync = promisify(execFile);

function setupScript(): string {
  return path.join(projectRoot(), 'infra', 'qemu', 'setup-qemu.sh');
}

/** Runs the setup script; throws QemuSetupError with its stderr when it fails. */
export async function runQemuSetup(): Promise<void> {
  try {
    await execFileAsync('bash', [setupScript()], { maxBuffer: 4 * 1024 * 1024 });
  } catch (error) {
    throw new QemuSetupError((error as { stderr?: string }).stderr ?? (error as Error).message, { cause: error });
  }
}

/**
 * Runs the setup script synchronously (for test files, which decide at load time whether their
 * tests run) and returns why QEMU is not usable here, or undefined when it is.
 */
export function qemuSetupFailureSync(): string | undefined {
  try {
    execFileSync('bash', [setupScript()], { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 4 * 1024 * 1024 });
    return undefined;
  } catch (error) {
    return new QemuSetupError(String((error as { stderr?: Buffer }).stderr ?? (error as Error).message)).message;
  }
}

/** A host ready for QEMU guests, or why it is not. */
export type QemuHost = { ready: true; image: GuestImage } | { ready: false; reason: string };

/**
 * Installs QEMU if needed and builds (or finds cached) the guest image. Only a failed setup (QEMU
 * not installable here) is reported as not ready; a failed image build throws GuestImageError.
 */
export async function prepareQemuHost(options: GuestImageOptions = {}): Promise<QemuHost> {
  try {
    await runQemuSetup();
  } catch (error) {
    if ((error as Error).name === 'QemuSetupError') return { ready: false, reason: (error as Error).message };
    throw error;
  }
  return { ready: true, image: await buildGuestImage(options) };
}
