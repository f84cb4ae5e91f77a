/**
 * The embedded Temporal dev server (`temporal server start-dev`), with its SQLite database in
 * `<stateDir>/temporal/temporal.db`. Because the database is on disk, stopping and starting the
 * server keeps running workflows; delete the folder to start from scratch.
 *
 * Everything listens on 127.0.0.1 (the gRPC frontend, the Web UI, and the HTTP API and metrics
 * ports the dev server picks at random); the server's version check and the UI's news feed are off.
 * ferry's search attributes (SEARCH_ATTRIBUTES in temporal-config) are registered at every start.
 *
 * Start and stop are idempotent (see service.ts). A start returns once the `default` namespace
 * answers `DescribeNamespace`, not merely when the port opens.
 */
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { NAMESPACE, SEARCH_ATTRIBUTES } from '../temporal-config';
import { resolveBinary } from './binaries';
import { LOOPBACK_HOST } from './ports';
import type { ServiceStartResult, ServiceStopResult } from './service';
import { startService, stopService } from './service';
import { servicePaths } from './service-files';

/** Service name: its folder in the state dir and its name in messages. */
export const TEMPORAL_SERVICE_NAME = 'temporal';
/** Start timeout of the dev server, until the namespace is usable (ms). Typically 2–5 s. */
export const DEFAULT_TEMPORAL_START_TIMEOUT_MS = 60_000;
/** Grace between SIGTERM and SIGKILL when stopping the dev server (ms). */
export const DEFAULT_TEMPORAL_STOP_GRACE_MS = 10_000;
/** Server log level (`debug`, `info`, `warn`, `error`). */
export const DEFAULT_TEMPORAL_LOG_LEVEL = 'warn';

/** Where and how to run the dev server. */
export interface TemporalDevServerOptions {
  /** Root state directory; the database and log go to `<stateDir>/temporal/`. */
  stateDir: string;
  /** gRPC frontend port on 127.0.0.1. */
  port: number;
  /** Web UI port on 127.0.0.1; ignored when `headless`. */
  uiPort: number;
  /** No Web UI (tests). Default false. */
  headless?: boolean;
  /** Default DEFAULT_TEMPORAL_LOG_LEVEL. */
  logLevel?: string;
  /** Default true; see ServiceSpec.detached. */
  detached?: boolean;
  /** Default DEFAULT_TEMPORAL_START_TIMEOUT_MS. */
  startTimeoutMs?: number;
}

/** The result of a start plus the gRPC address (`127.0.0.1:<port>`) and the UI's URL, if any. */
export interface TemporalDevServerStartResult extends ServiceStartResult {
  address: string;
  uiUrl: string | undefined;
}

/** Path of the dev server's SQLite database under `stateDir`. */
export function temporalDbFile(stateDir: string): string {
  return path.join(servicePaths(stateDir, TEMPORAL_SERVICE_NAME).dir, 'temporal.db');
}

/** Arguments of `temporal server start-dev` for `options` (flags checked against CLI 1.9.1). */
export function temporalDevServerArgs(options: TemporalDevServerOptions): string[] {
  const args = [
    'server',
    'start-dev',
    '--ip',
    LOOPBACK_HOST,
    '--port',
    String(options.port),
    '--db-filename',
    temporalDbFile(options.stateDir),
    '--namespace',
    NAMESPACE,
    '--log-level',
    options.logLevel ?? DEFAULT_TEMPORAL_LOG_LEVEL,
    // The env var TEMPORAL_VERSION_CHECK_DISABLED sets the same default; this pins it.
    '--dynamic-config-value',
    'frontend.enableServerVersionCheck=false',
  ];
  if (options.headless === true) {
    args.push('--headless');
  } else {
    args.push('--ui-ip', LOOPBACK_HOST, '--ui-port', String(options.uiPort), '--ui-disable-news-fetch');
  }
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${name}=${type}`);
  return args;
}

/**
 * Resolves once `namespace` answers DescribeNamespace at `address`, retrying until `timeoutMs`
 * passes; then throws with the last error as `cause`.
 */
export async function waitForNamespace(address: string, namespace: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  do {
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address, connectTimeout: 2_000 });
      await connection.workflowService.describeNamespace({ namespace });
      return;
    } catch (error) {
      lastError = error;
    } finally {
      await connection?.close().catch(() => undefined);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  } while (Date.now() < deadline);
  throw new Error(`namespace ${namespace} not usable at ${address} within ${timeoutMs} ms`, { cause: lastError });
}

/**
 * Starts the dev server unless it already runs, and waits until the namespace is usable. Throws
 * BinaryNotFoundError, PortInUseError or ServiceStartError (with the log's tail).
 */
export async function startTemporalDevServer(options: TemporalDevServerOptions): Promise<TemporalDevServerStartResult> {
  const command = resolveBinary('temporal');
  const result = await startService({
    name: TEMPORAL_SERVICE_NAME,
    command,
    args: temporalDevServerArgs(options),
    stateDir: options.stateDir,
    port: options.port,
    detached: options.detached ?? true,
    startTimeoutMs: options.startTimeoutMs ?? DEFAULT_TEMPORAL_START_TIMEOUT_MS,
    portHint: 'set FERRY_TEMPORAL_PORT',
    // TEMPORAL_ADDRESS or TEMPORAL_NAMESPACE from the caller's shell must not leak into the server.
    env: { TEMPORAL_VERSION_CHECK_DISABLED: '1', TEMPORAL_ADDRESS: undefined, TEMPORAL_NAMESPACE: undefined },
    ready: (port, remainingMs) => waitForNamespace(`${LOOPBACK_HOST}:${port}`, NAMESPACE, remainingMs),
  });
  const uiUrl = options.headless === true ? undefined : `http://${LOOPBACK_HOST}:${options.uiPort}`;
  return { ...result, address: `${LOOPBACK_HOST}:${result.port}`, uiUrl };
}

/** Stops the dev server; not running is success. Workflows survive in the database. */
export function stopTemporalDevServer(options: { stateDir: string; stopGraceMs?: number }): Promise<ServiceStopResult> {
  return stopService({
    name: TEMPORAL_SERVICE_NAME,
    stateDir: options.stateDir,
    stopGraceMs: options.stopGraceMs ?? DEFAULT_TEMPORAL_STOP_GRACE_MS,
  });
}
