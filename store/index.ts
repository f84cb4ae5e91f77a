/**
 * The shared store: on a directory or an S3 bucket; page files, manifests and VM ownership records.
 * Here: the PageStore interface (page-store.ts) and what both stores share (manifest format, page
 * sealing, errors, safe paths, VM history, the store name and `openPageStore`). `directory/` holds
 * the store on a shared directory (page file, manifests, mailbox, link(2) ownership); `object/` the
 * store on an ObjectStore (chunks, manifests, ownership objects) with its S3 and directory adapters.
 * Neither of the two imports the other.
 */
export {
  PAGE_FILE_HEADER_BYTES,
  PageFile,
  assertStoreWritable,
  migrationDir,
  removeMigrationFiles,
  type PageEntry,
  type PageFileHeader,
} from './directory/page-file';
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
} from './directory/ownership';
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
} from './object/object-store';
export { S3ObjectStore, type S3ObjectStoreOptions } from './object/s3-object-store';
export { DirectoryObjectStore } from './object/directory-object-store';
export type {
  NewestRoundManifest,
  PageFile as StorePageFile,
  PageSource,
  PageStore,
  StoreHealth,
  StoreOutage,
} from './page-store';
export { claimOwnership as claimStoreOwnership, waitForMessage } from './page-store';
export { DirectoryPageStore } from './directory/directory-page-store';
export { ObjectPageStore } from './object/object-page-store';
export { ObjectPageFile } from './object/object-page-file';
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
} from './object/object-store-errors';
