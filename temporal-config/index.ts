/** Shared configuration of ferry's processes: constants (presets) and the environment. */
export {
  CONTROL_TASK_QUEUE,
  DEFAULT_HOSTS,
  DEFAULT_NATS_PORT,
  DEFAULT_TEMPORAL_PORT,
  DEFAULT_TEMPORAL_UI_PORT,
  NAMESPACE,
  NATS_MAX_PAYLOAD_BYTES,
  SEARCH_ATTRIBUTES,
  TIMEOUTS,
  hostTaskQueue,
} from './presets';
export {
  DEFAULT_S3_CREDENTIALS_FILE,
  DEFAULT_S3_PORT,
  DEFAULT_S3_REGION,
  ferryEnvironment,
  natsTlsEnvironment,
  projectRoot,
  readS3CredentialsFile,
  s3CredentialsFile,
  s3Environment,
  S3KeyMissingError,
  type FerryEnvironment,
  type NatsTlsEnvironment,
  type S3Environment,
} from './environment';
