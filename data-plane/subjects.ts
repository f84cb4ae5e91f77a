/** NATS subjects of one migration. Migration ids are validated to be subject-safe tokens. */

/** Subjects used by the page stream of migration `migrationId`. */
export interface MigrationSubjects {
  /** Source → destination: page batches. */
  pages: string;
  /** Destination → source: credit grants (JSON `CreditGrant`). */
  credit: string;
  /** Source → destination requests (`final`, `sync`), answered by the destination. */
  control: string;
}

/** Subjects for `migrationId`. */
export function migrationSubjects(migrationId: string): MigrationSubjects {
  const base = `ferry.migration.${migrationId}`;
  return { pages: `${base}.pages`, credit: `${base}.credit`, control: `${base}.control` };
}

/** Credit granted by the receiver: the sender may send batches with seq <= grantedSeq. */
export interface CreditGrant {
  grantedSeq: number;
  /** Highest batch sequence number the receiver has applied or written off as lost. */
  appliedSeq: number;
}
