/**
 * Running ferry's and Temporal's command-line tools from integration tests, as a user would: a
 * child process with the cluster's environment, its exit code and its output.
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';

/** What a finished command left. */
export interface CommandOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** The compiled `ferry` CLI. */
export const FERRY_CLI = path.resolve(__dirname, '..', '..', '..', 'cli', 'main.js');

/** Runs `command` with `args` and `env`; never rejects (a failure is a non-zero code). */
export function runCommand(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<CommandOutput> {
  return new Promise((resolve) => {
    execFile(command, args, { env, maxBuffer: 16 * 2 ** 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** Runs `ferry <args>` with `env`. */
export function runFerryCli(env: NodeJS.ProcessEnv, args: string[]): Promise<CommandOutput> {
  return runCommand(process.execPath, [FERRY_CLI, ...args], env);
}
