/**
 * The guest port's device state (vmm/guest-port.ts) for a QEMU guest: QEMU's own migration with
 * `x-ignore-shared` carries only device state, since guest RAM lives in a shared file that ferry's
 * engine moves itself (see device-state.ts). The source's stream is caught in memory through a
 * private unix socket and handed to the engine as bytes; the destination (started `-incoming
 * defer -S`) listens on a unix socket of its own, is fed those bytes and stays paused until the
 * engine lets it run. The bytes travel inside the final request, which is MAC'd, so a device state
 * that was changed on the way is refused with the request.
 */
import { rmSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { GuestDevices } from '../guest-port';
import { enableDeviceStateOnly, migrateDeviceState, startIncoming, waitForMigrationEnd } from './device-state';
import type { QmpClient } from './qmp-client';

/** GuestDevices over one QEMU's QMP session; see the module comment. */
export class QemuDevices implements GuestDevices {
  private loaded = false;

  /** `socketDir`: a private folder (the QEMU's state dir) for the two short-lived sockets. */
  constructor(
    private readonly qmp: QmpClient,
    private readonly socketDir: string,
  ) {}

  /** Turns on device-state-only migration in this QEMU; call once, before save or load. */
  async enable(): Promise<void> {
    await enableDeviceStateOnly(this.qmp);
  }

  /** Migrates the paused guest's device state into memory and resolves to its bytes. */
  async save(): Promise<Buffer> {
    const socketPath = path.join(this.socketDir, 'device-state-out.sock');
    rmSync(socketPath, { force: true });
    const chunks: Buffer[] = [];
    let received: () => void = () => undefined;
    const ended = new Promise<void>((resolve) => (received = resolve));
    const server = net.createServer((conn) => {
      conn.on('data', (chunk: Buffer) => chunks.push(chunk));
      conn.on('close', () => received());
      conn.on('error', () => received());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, resolve);
    });
    try {
      await migrateDeviceState(this.qmp, `unix:${socketPath}`);
      await ended;
      return Buffer.concat(chunks);
    } finally {
      server.close();
      rmSync(socketPath, { force: true });
    }
  }

  /**
   * Loads `state` into this `-incoming defer` QEMU and resolves once QEMU reports the incoming
   * migration complete (the guest stays paused). A QEMU takes one incoming migration only: a second
   * call throws.
   */
  async load(state: Buffer): Promise<void> {
    if (this.loaded) throw new Error('this QEMU has already taken its incoming device state');
    this.loaded = true;
    const socketPath = path.join(this.socketDir, 'device-state-in.sock');
    rmSync(socketPath, { force: true });
    const completed = waitForMigrationEnd(this.qmp);
    completed.catch(() => undefined);
    await startIncoming(this.qmp, `unix:${socketPath}`);
    await new Promise<void>((resolve, reject) => {
      const conn = net.createConnection({ path: socketPath }, () => conn.end(state, () => resolve()));
      conn.on('error', reject);
    });
    await completed;
  }
}
