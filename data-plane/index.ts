/** The page stream and the migration engine that runs inside each VMM process. */
export {
  BATCH_FLAG_FINAL,
  BATCH_FLAG_ROUND_END,
  BatchBuilder,
  BatchFormatError,
  batchSizeBytes,
  decodeBatch,
} from './batch-format';
export type { BatchEntry, DecodedBatch } from './batch-format';
export { migrationHandlers, type MigrationEngineState } from './vmm-handlers';
export { DEFAULT_ENGINE_DEPS, resolveEngineDeps, type EngineDeps } from './engine-deps';
export type { BusHeaders, BusMessage, BusStatus, BusSubscription, MessageBus } from './message-bus';
export { MigrationLease, MIN_LEASE_TTL_MS, resolveLeaseTtlMs } from './migration-lease';
export { MAC_BYTES, MessageAuth, type MessageKind, type SealedMessage } from './message-auth';
export {
  KEY_NONCE_BYTES,
  MIGRATION_KEY_BYTES,
  deriveMigrationKey,
  loadClusterSecret,
  newKeyNonce,
} from './migration-key';
export { PAGE_HASH_BYTES, PageHashes, ZERO_PAGE_HASH, pageHash } from './page-hashes';
export { migrationSubjects, type CreditGrant, type MigrationSubjects } from './subjects';
export { FAULT_ACTIONS, FAULT_POINTS, type FaultPoint, type FaultSpec } from './fault-points';
export {
  ClusterSecretError,
  FaultSpecError,
  MigrationInProgressError,
  SwitchoverError,
  TransportStalledError,
  UnknownMigrationError,
  VerificationError,
  VmAlreadyMigratingError,
} from './errors';
export type {
  FinalReply,
  FinalRequest,
  IncomingStartInput,
  IncomingStatus,
  OutgoingStartInput,
  RoundStats,
  SwitchoverStats,
} from '../model/protocol';
