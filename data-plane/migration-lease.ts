/**
 * The lease a migration's workflow holds on the engine's state in one VMM (DESIGN invariant 10:
 * nothing outlives its migration). Every call of the host agent that names the migration renews
 * it (each heartbeat of a round or of the receiver, and a cheap `migration.renewLease` where the
 * workflow has nothing else under way); when no renewal comes for `ttlMs`, the lease lapses and
 * its holder releases what it kept (see vmm-handlers.ts for what each side releases).
 */
import { DEFAULT_MIGRATION_LEASE_TTL_MS } from '../temporal-config/presets';

/** Shortest lease accepted from a caller (ms); anything shorter would lapse between heartbeats. */
export const MIN_LEASE_TTL_MS = 500;

/**
 * A lease TTL from untrusted params: `raw` if it is an integer of at least MIN_LEASE_TTL_MS (ms),
 * DEFAULT_MIGRATION_LEASE_TTL_MS if absent. Throws RangeError naming the bad value otherwise.
 */
export function resolveLeaseTtlMs(raw: unknown): number {
  if (raw === undefined || raw === null) return DEFAULT_MIGRATION_LEASE_TTL_MS;
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < MIN_LEASE_TTL_MS) {
    throw new RangeError(
      `leaseTtlMs must be an integer of at least ${MIN_LEASE_TTL_MS} ms, got ${JSON.stringify(raw)}`,
    );
  }
  return raw;
}

/** A lease that calls `onLapse` once if it is not renewed within `ttlMs`. */
export class MigrationLease {
  private timer: NodeJS.Timeout | undefined;
  private expiresAt = 0;

  constructor(
    readonly ttlMs: number,
    private readonly onLapse: () => void,
  ) {
    this.renew();
  }

  /** Starts the lease's time again; does nothing once it lapsed or was cancelled. */
  renew(): void {
    if (this.expiresAt < 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.expiresAt = Date.now() + this.ttlMs;
    this.timer = setTimeout(() => {
      this.expiresAt = -1;
      this.timer = undefined;
      this.onLapse();
    }, this.ttlMs);
    this.timer.unref();
  }

  /** Ends the lease without lapsing (its holder was released in order). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.expiresAt = -1;
  }

  /** Milliseconds until it lapses, 0 once it has lapsed or was cancelled. */
  expiresInMs(): number {
    return this.expiresAt < 0 ? 0 : Math.max(0, this.expiresAt - Date.now());
  }
}
