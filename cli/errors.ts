/** Errors the CLI reports as one actionable line, with their exit codes. */

/** Exit codes of `ferry`. */
export const EXIT = {
  ok: 0,
  unknown: 1,
  usage: 2,
  notFound: 3,
  migrationFailed: 4,
  servicesDown: 5,
  conflict: 6,
} as const;

/** A failure the user can act on: printed as one line, exits with `exitCode`. */
export class CliError extends Error {
  override readonly name = 'CliError';

  constructor(
    message: string,
    readonly exitCode: number,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
  }
}

/** Shorthand for a usage error (exit code 2). */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT.usage);
}

/** The command line ended with nothing more to say (help or version printed): exit with `exitCode`. */
export class CliExit extends Error {
  override readonly name = 'CliExit';

  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}
