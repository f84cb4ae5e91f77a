/** Errors of the soak. */

/**
 * A timed fault came due after the phases it is meant for (the migration was quicker than the
 * baseline): nothing was injected, and the migration counts as fault-free.
 */
export class FaultMissedError extends Error {
  override readonly name = 'FaultMissedError';

  /** `phase` is where the migration stood when the fault was due, e.g. `completed r2`. */
  constructor(
    readonly fault: string,
    readonly phase: string,
    opts?: { cause?: unknown },
  ) {
    super(`fault ${fault} missed its moment [phase=${phase}]: the migration was past it, nothing injected`, opts);
  }
}
