/**
 * The one place where environment variables are read: endpoints and folders of this process.
 */
import * as path from 'node:path';
import { DEFAULT_NATS_PORT, DEFAULT_TEMPORAL_PORT, DEFAULT_TEMPORAL_UI_PORT } from './presets';

/** Root of the project checkout (two levels up from dist/temporal-config or temporal-config). */
export function projectRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i += 1) {
    if (path.basename(dir) === 'dist') return path.dirname(dir);
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

/** Resolved endpoints and folders for this process, read from the environment once. */
export interface FerryEnvironment {
  /** Where services keep their state, logs and pid files, and hosts their VM records. */
  stateDir: string;
  /** Where infra/setup.sh installs the pinned service binaries (a Python venv). */
  toolsDir: string;
  temporalAddress: string;
  temporalPort: number;
  temporalUiPort: number;
  natsUrl: string;
  natsPort: number;
  /** Default shared page store directory, seen by every host. */
  storeDir: string;
}

function intFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0 || value > 65535) {
    throw new Error(`${name} must be a port number, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Reads FERRY_* environment variables; defaults place everything under `<repo>/.ferry`. */
export function ferryEnvironment(env: NodeJS.ProcessEnv = process.env): FerryEnvironment {
  const root = projectRoot();
  const stateDir = path.resolve(env['FERRY_STATE_DIR'] ?? path.join(root, '.ferry', 'state'));
  const temporalPort = intFromEnv('FERRY_TEMPORAL_PORT', DEFAULT_TEMPORAL_PORT);
  const natsPort = intFromEnv('FERRY_NATS_PORT', DEFAULT_NATS_PORT);
  return {
    stateDir,
    toolsDir: path.resolve(env['FERRY_TOOLS_DIR'] ?? path.join(root, '.ferry', 'tools')),
    temporalAddress: env['FERRY_TEMPORAL_ADDRESS'] ?? `127.0.0.1:${temporalPort}`,
    temporalPort,
    temporalUiPort: intFromEnv('FERRY_TEMPORAL_UI_PORT', DEFAULT_TEMPORAL_UI_PORT),
    natsUrl: env['FERRY_NATS_URL'] ?? `nats://127.0.0.1:${natsPort}`,
    natsPort,
    storeDir: path.resolve(env['FERRY_STORE_DIR'] ?? path.join(stateDir, 'store')),
  };
}
