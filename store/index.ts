/** The shared store: on a directory or an S3 bucket; page files, manifests and VM ownership records. */
export {
  PAGE_FILE_HEADER_BYTES,
  PageFile,
  assertStoreWritable,
  migrationDir,
  removeMigrationFiles,
  type PageEntry,
  type PageFileHeader,
} from './page-file';
export { decodeManifest, encodeManifest, type Manifest } from './manifest-format';
export {
  claimOwnership,
  commitClaim,
  discardClaim,
  prepareClaim,
  readOwner,
  releaseOwnership,
  type OwnershipRecord,
  type PreparedClaim,
} from './ownership';
export {
  ManifestFormatError,
  PageFileHeaderError,
  PageStoreError,
  PathEscapeError,
  StoreNotAllowedError,
  StoreUnavailableError,
  StoreUndecidedError,
} from './errors';
export { assertStoreDirAllowed, makePrivateDir, pathUnder, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './safe-path';
export { DEFAULT_ANSWER_LIMIT_MS, untilAnswered, type AnswerOptions } from './store-answer';
export {
  assertValidKey,
  resolveRetryOptions,
  withRetries,
  type GetOptions,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
  type RetryOptions,
  type StoredObject,
} from './object-store';
export { S3ObjectStore, type S3ObjectStoreOptions } from './s3-object-store';
export { DirectoryObjectStore } from './directory-object-store';
export type {
  NewestRoundManifest,
  PageFile as StorePageFile,
  PageSource,
  PageStore,
  StoreHealth,
  StoreOutage,
} from './page-store';
export { claimOwnership as claimStoreOwnership, waitForMessage } from './page-store';
export { DirectoryPageStore } from './directory-page-store';
export { ObjectPageStore } from './object-page-store';
export { ObjectPageFile } from './object-page-file';
export {
  assertStoreAllowed,
  closePageStores,
  InvalidStoreRefError,
  openPageStore,
  parseStoreRef,
  type StoreRef,
} from './open-store';
export {
  BucketNotFoundError,
  ObjectStoreError,
  PreconditionFailedError,
  StoreAccessDeniedError,
  StoreUnreachableError,
} from './object-store-errors';
