/**
 * infra: brings the real services (Temporal dev server, nats-server, SeaweedFS) up and down, for
 * `ferry up` and for integration tests, finds their pinned binaries, and injects network faults
 * (netns.ts, tcp-proxy.ts). The disposable test services and clusters built on it are in harness/.
 * See each module's header.
 */
export type { ServiceBinary } from './binaries';
export { resolveBinary, toolsBinDir } from './binaries';
export type { ServiceStartFailure } from './errors';
export {
  BinaryNotFoundError,
  NetworkNamespaceError,
  PortInUseError,
  ServiceStartError,
  ServiceStopError,
} from './errors';
export { createTestNetwork, type TestNetwork } from './netns';
export { startTcpProxy, type TcpProxy, type TcpProxyOptions } from './tcp-proxy';
export type { NatsServerOptions, NatsServerStartResult } from './nats-server';
export {
  DEFAULT_NATS_MAX_PENDING_BYTES,
  DEFAULT_NATS_START_TIMEOUT_MS,
  DEFAULT_NATS_STOP_GRACE_MS,
  NATS_SERVICE_NAME,
  natsConfig,
  startNatsServer,
  stopNatsServer,
} from './nats-server';
export {
  isPortAnswering,
  isPortFree,
  LOOPBACK_HOST,
  pickFreePort,
  pickFreePorts,
  waitForFreePort,
  waitForPort,
} from './ports';
export type { SeaweedServerOptions, SeaweedServerStartResult } from './seaweedfs';
export {
  DEFAULT_SEAWEED_START_TIMEOUT_MS,
  DEFAULT_SEAWEED_STOP_GRACE_MS,
  resolveSeaweedPorts,
  SEAWEED_MAX_VOLUMES,
  SEAWEED_VOLUME_SIZE_LIMIT_MB,
  seaweedServerArgs,
  startSeaweedServer,
  stopSeaweedServer,
} from './seaweedfs';
export { waitForS3Gateway } from './seaweedfs-ready';
export type { S3Credentials, SeaweedPaths, SeaweedPorts } from './seaweedfs-files';
export {
  generateCredentials,
  grpcSocketPaths,
  SEAWEED_PORT_NAMES,
  SEAWEED_SERVICE_NAME,
  seaweedPaths,
} from './seaweedfs-files';
export type { ServiceRef, ServiceSpec, ServiceStartResult, ServiceStopResult } from './service';
export {
  DEFAULT_START_TIMEOUT_MS,
  DEFAULT_STOP_GRACE_MS,
  serviceStatus,
  signalService,
  startService,
  stopService,
} from './service';
export type { TemporalDevServerOptions, TemporalDevServerStartResult } from './temporal-server';
export {
  DEFAULT_TEMPORAL_LOG_LEVEL,
  DEFAULT_TEMPORAL_START_TIMEOUT_MS,
  DEFAULT_TEMPORAL_STOP_GRACE_MS,
  startTemporalDevServer,
  stopTemporalDevServer,
  TEMPORAL_SERVICE_NAME,
  temporalDbFile,
  temporalDevServerArgs,
  waitForNamespace,
} from './temporal-server';
