/**
 * Where the service binaries are (`weed` is SeaweedFS). infra/setup.sh installs pinned versions
 * into a project-local Python venv (`<toolsDir>/venv/bin`); that copy wins over whatever is on
 * PATH so that every checkout runs the versions it was tested with.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ferryEnvironment } from '../temporal-config';
import { BinaryNotFoundError } from './errors';

/** The service binaries ferry runs. */
export type ServiceBinary = 'temporal' | 'temporal-test-server' | 'nats-server' | 'weed';

/** Directory holding the venv copies of the binaries: `<FERRY_TOOLS_DIR or .ferry/tools>/venv/bin`. */
export function toolsBinDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(ferryEnvironment(env).toolsDir, 'venv', 'bin');
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Absolute path of `name`: the tools venv copy first, then the first executable on PATH.
 * Throws BinaryNotFoundError (which tells to run `npm run setup`) when neither exists.
 */
export function resolveBinary(name: ServiceBinary, env: NodeJS.ProcessEnv = process.env): string {
  const candidates = [path.join(toolsBinDir(env), name)];
  for (const dir of (env['PATH'] ?? '').split(path.delimiter)) {
    if (dir !== '') candidates.push(path.resolve(dir, name));
  }
  const found = candidates.find(isExecutableFile);
  if (found === undefined) throw new BinaryNotFoundError(name, candidates);
  return found;
}
