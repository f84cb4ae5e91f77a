/** Errors of the page stream and of the migration engine inside the VMM. */

/** The receiver stopped granting credit or acknowledging batches for longer than allowed. */
export class TransportStalledError extends Error {
  override readonly name = 'TransportStalledError';

  constructor(
    readonly migrationId: string,
    readonly waitingFor: string,
    readonly lastSeq: number,
    readonly appliedSeq: number,
  ) {
    super(
      `page stream stalled [migration=${migrationId}, sent=${lastSeq}, applied=${appliedSeq}]: no ${waitingFor} from the receiver`,
    );
  }
}

/** The switchover could not complete; `rolledBack` says whether the source resumed. */
export class SwitchoverError extends Error {
  override readonly name = 'SwitchoverError';

  constructor(
    readonly migrationId: string,
    readonly reason: string,
    readonly rolledBack: boolean,
    opts?: { cause?: unknown },
  ) {
    super(
      `switchover failed [migration=${migrationId}]: ${reason}; ${rolledBack ? 'the source VM resumed' : 'the destination owns the VM'}`,
      opts,
    );
  }
}

/** A request named a migration this VMM does not know, or is in the wrong role for. */
export class UnknownMigrationError extends Error {
  override readonly name = 'UnknownMigrationError';

  constructor(
    readonly migrationId: string,
    role: 'outgoing' | 'incoming',
  ) {
    super(`no ${role} migration ${migrationId} in this VMM`);
  }
}

/** The destination could not verify what it received against the source. */
export class VerificationError extends Error {
  override readonly name = 'VerificationError';

  constructor(
    readonly migrationId: string,
    detail: string,
  ) {
    super(`memory verification failed [migration=${migrationId}]: ${detail}`);
  }
}

/** The VM already takes part in another migration (one migration per VM at a time). */
export class MigrationInProgressError extends Error {
  override readonly name = 'MigrationInProgressError';

  constructor(
    readonly vmId: string,
    readonly otherMigrationId: string,
  ) {
    super(`VM ${vmId} is already being migrated by ${otherMigrationId}`);
  }
}

/** `migration.armFault` got a malformed fault. */
export class FaultSpecError extends Error {
  override readonly name = 'FaultSpecError';

  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(`invalid fault [${field}]: ${detail}`);
  }
}

/**
 * Another migration has claimed the VM on its source (one migration per VM at a time, whatever
 * the workflow id): `runningMigrationId` names it.
 */
export class VmAlreadyMigratingError extends Error {
  override readonly name = 'VmAlreadyMigratingError';

  constructor(
    readonly vmId: string,
    readonly runningMigrationId: string,
    readonly migrationId: string,
  ) {
    super(
      `VM ${vmId} is already being migrated by ${runningMigrationId}; migration ${migrationId} ` +
        'cannot start until that one ends (cancel it, or wait for its lease to lapse if its workflow is gone)',
    );
  }
}

/** The cluster secret that migration keys derive from cannot be read, created or trusted. */
export class ClusterSecretError extends Error {
  override readonly name = 'ClusterSecretError';

  constructor(detail: string, opts?: { cause?: unknown }) {
    super(`cluster secret: ${detail}`, opts);
  }
}
