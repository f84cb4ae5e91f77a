/**
 * Errors raised while preparing a host for QEMU guests: installing QEMU and building the guest image
 * (kernel, initramfs, guest program). Each says which step failed and what to do; the low-level
 * error, when there is one, is attached as `cause`. Under Jest, recognise them by `name`.
 */

/** infra/qemu/setup-qemu.sh failed: QEMU is not installed and could not be installed here. */
export class QemuSetupError extends Error {
  override readonly name = 'QemuSetupError';
  /** What the setup script printed on stderr, trimmed. */
  readonly stderr: string;

  constructor(stderr: string, options?: { cause?: unknown }) {
    super(`QEMU setup failed (infra/qemu/setup-qemu.sh): ${stderr.trim() || 'no output'}`, options);
    this.stderr = stderr.trim();
  }
}

/** A step of building the guest image failed (a package download, the compiler, unpacking). */
export class GuestImageError extends Error {
  override readonly name = 'GuestImageError';
  /** The step that failed, e.g. `apt-get download busybox-static`. */
  readonly step: string;

  constructor(step: string, detail: string, options?: { cause?: unknown }) {
    super(`guest image build failed [step=${step}]: ${detail}`, options);
    this.step = step;
  }
}
