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
export { ferryEnvironment, projectRoot, type FerryEnvironment } from './environment';
