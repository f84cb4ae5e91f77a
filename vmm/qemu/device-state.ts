/**
 * The device-state-only handover ferry uses for QEMU guests: with the `x-ignore-shared` capability
 * on both sides, QEMU's migration stream skips the shared RAM (which ferry moves itself into the
 * destination's RAM file) and carries only device state. The destination must have been started
 * with `-incoming defer` (QemuProcess `incoming: true`); set the capabilities on both sides, then
 * `startIncoming` on the destination before `migrateDeviceState` on the source.
 *
 * Capabilities are set idempotently; a failed migration leaves the source as it was (paused stays
 * paused), and QEMU allows another attempt.
 */
import { type WaitOptions } from './event-channel';
import { QmpCommandError } from './errors';
import { type QmpClient, type QmpEvent } from './qmp-client';

/** Default time a device-state migration may take, in milliseconds. */
export const DEFAULT_DEVICE_STATE_TIMEOUT_MS = 30_000;

/** What the source's `query-migrate` said about a completed migration. */
export interface DeviceStateMigration {
  /** QEMU's `total-time`, milliseconds. */
  totalTimeMs: number;
  /** QEMU's `downtime` (its own view: source side only), milliseconds. */
  downtimeMs: number | undefined;
  /** QEMU's `setup-time`, milliseconds. */
  setupTimeMs: number | undefined;
  /** RAM bytes QEMU sent (≈0 with x-ignore-shared). */
  ramTransferredBytes: number;
  /** The source's MIGRATION event with status `completed`. */
  completedEvent: QmpEvent;
}

/**
 * Turns on `x-ignore-shared` (shared RAM is not sent) and `events` (MIGRATION events) on one side.
 * Throws QmpCommandError when QEMU refuses (e.g. a migration is already running).
 */
export async function enableDeviceStateOnly(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate-set-capabilities', {
    capabilities: [
      { capability: 'x-ignore-shared', state: true },
      { capability: 'events', state: true },
    ],
  });
}

/** Makes a `-incoming defer` destination listen on `uri` (e.g. `unix:/path/to/sock`). */
export async function startIncoming(destination: QmpClient, uri: string): Promise<void> {
  await destination.execute('migrate-incoming', { uri });
}

function migrationStatus(e: QmpEvent): string {
  return typeof e.data['status'] === 'string' ? e.data['status'] : '';
}

/**
 * Waits for a MIGRATION event with status `completed` on `qmp` (either side); rejects with
 * QmpCommandError when the status becomes `failed` or `cancelled`, and with QemuTimeoutError.
 */
export async function waitForMigrationEnd(qmp: QmpClient, options: WaitOptions = {}): Promise<QmpEvent> {
  const end = await qmp.waitForEvent(
    'MIGRATION',
    (e) => ['completed', 'failed', 'cancelled'].includes(migrationStatus(e)),
    { timeoutMs: DEFAULT_DEVICE_STATE_TIMEOUT_MS, ...options, description: 'MIGRATION (completed|failed|cancelled)' },
  );
  if (migrationStatus(end) !== 'completed') {
    const info = await qmp
      .execute<{ 'error-desc'?: string }>('query-migrate')
      .catch(() => ({}) as { 'error-desc'?: string });
    throw new QmpCommandError('migrate', migrationStatus(end), info['error-desc'] ?? 'migration did not complete');
  }
  return end;
}

/**
 * Sends the source's device state to `uri` (where the destination listens) and waits until QEMU
 * reports it complete. Stop the source first (QMP `stop`): ferry's RAM copy is exact only for a
 * stopped guest. Throws QmpCommandError when QEMU refuses or the migration fails.
 */
export async function migrateDeviceState(
  source: QmpClient,
  uri: string,
  options: WaitOptions = {},
): Promise<DeviceStateMigration> {
  const ended = waitForMigrationEnd(source, options);
  ended.catch(() => undefined);
  await source.execute('migrate', { uri });
  const completedEvent = await ended;
  const info = await source.execute<{
    'total-time'?: number;
    downtime?: number;
    'setup-time'?: number;
    ram?: { transferred?: number };
  }>('query-migrate');
  return {
    totalTimeMs: info['total-time'] ?? 0,
    downtimeMs: info.downtime,
    setupTimeMs: info['setup-time'],
    ramTransferredBytes: info.ram?.transferred ?? 0,
    completedEvent,
  };
}
