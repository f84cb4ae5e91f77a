/**
 * NATS subjects of one migration, and what each host may publish and subscribe to.
 *
 * A subject names the migration's source host, its destination host and the migration:
 * `ferry.<source>.<destination>.<migrationId>.<kind>`. That is what lets nats-server give each host
 * only its role's subjects (hostSubjectGrants): host h publishes the pages and control requests of
 * the migrations it sources and the credit of those it receives, and subscribes to the reverse.
 * Replies to control requests go to the requesting host's own inbox prefix (hostInboxPrefix), which
 * only that host may subscribe to; the answering host publishes there through nats-server's
 * `allow_responses` (a reply to a request it received), not through a grant.
 */

/** First token of every ferry subject. */
export const SUBJECT_ROOT = 'ferry';
/** First token of every inbox (nats.js's own default is `_INBOX`); the host id follows. */
export const INBOX_ROOT = '_INBOX';

/** Subjects used by the page stream of one migration. */
export interface MigrationSubjects {
  /** Source → destination: page batches. */
  pages: string;
  /** Destination → source: credit grants (JSON `CreditGrant`). */
  credit: string;
  /** Source → destination requests (`final`, `sync`), answered by the destination. */
  control: string;
}

/** A host id or migration id that cannot be one token of a NATS subject. */
export class SubjectTokenError extends Error {
  override readonly name = 'SubjectTokenError';

  constructor(
    readonly what: string,
    readonly value: string,
  ) {
    super(`${what} cannot be used in a NATS subject, got ${JSON.stringify(value)}: use letters, digits, '_' or '-'`);
  }
}

const SUBJECT_TOKEN = /^[A-Za-z0-9_-]+$/;

/** Throws SubjectTokenError unless `value` is one subject token (no '.', wildcard or space). */
export function assertSubjectToken(what: string, value: string): void {
  if (!SUBJECT_TOKEN.test(value)) throw new SubjectTokenError(what, value);
}

/**
 * Subjects of migration `migrationId` from `sourceHost` to `destinationHost`. Throws
 * SubjectTokenError when an id is not one subject token.
 */
export function migrationSubjects(sourceHost: string, destinationHost: string, migrationId: string): MigrationSubjects {
  assertSubjectToken('source host id', sourceHost);
  assertSubjectToken('destination host id', destinationHost);
  assertSubjectToken('migration id', migrationId);
  const base = `${SUBJECT_ROOT}.${sourceHost}.${destinationHost}.${migrationId}`;
  return { pages: `${base}.pages`, credit: `${base}.credit`, control: `${base}.control` };
}

/** Inbox prefix of `hostId` (nats.js `inboxPrefix`): its requests' replies arrive below it. */
export function hostInboxPrefix(hostId: string): string {
  assertSubjectToken('host id', hostId);
  return `${INBOX_ROOT}.${hostId}`;
}

/** Subjects one host may publish and subscribe to (NATS wildcards). */
export interface SubjectGrants {
  publish: string[];
  subscribe: string[];
  /** The host answers requests it received (`allow_responses`): a destination answers `control`. */
  allowResponses: boolean;
}

/** What `hostId` may do on NATS: its role's subjects in every migration, and its own inbox. */
export function hostSubjectGrants(hostId: string): SubjectGrants {
  assertSubjectToken('host id', hostId);
  const asSource = `${SUBJECT_ROOT}.${hostId}.*.*`;
  const asDestination = `${SUBJECT_ROOT}.*.${hostId}.*`;
  return {
    publish: [`${asSource}.pages`, `${asSource}.control`, `${asDestination}.credit`],
    subscribe: [
      `${asDestination}.pages`,
      `${asDestination}.control`,
      `${asSource}.credit`,
      `${hostInboxPrefix(hostId)}.>`,
    ],
    allowResponses: true,
  };
}

/** Credit granted by the receiver: the sender may send batches with seq <= grantedSeq. */
export interface CreditGrant {
  grantedSeq: number;
  /** Highest batch sequence number the receiver has applied or written off as lost. */
  appliedSeq: number;
}
