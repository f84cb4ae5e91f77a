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
  DEFAULT_S3_ACCESS_KEY_ID,
  DEFAULT_S3_PORT,
  DEFAULT_S3_REGION,
  DEFAULT_S3_SECRET_ACCESS_KEY,
  ferryEnvironment,
  natsTlsEnvironment,
  projectRoot,
  s3Environment,
  type FerryEnvironment,
  type NatsTlsEnvironment,
  type S3Environment,
} from './environment';
