/** Files that hold secrets (credentials, keys, configs with passwords): readable by their owner only. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Writes `contents` to `file` with mode 0600 (also when the file existed with another mode),
 * creating its folder with mode 0700 when missing.
 */
export function writePrivateFile(file: string, contents: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, contents, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}
