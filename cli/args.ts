/** A small argument parser: positionals, `--flag value`, `--flag=value` and boolean `--flag`. */
import { usageError } from './errors';

/** Parsed command line. */
export interface ParsedArgs {
  positionals: string[];
  flags: Map<string, string | true>;
}

/** Splits `argv`; `booleans` lists flags that take no value. */
export function parseArgs(
  argv: readonly string[],
  booleans: readonly string[] = ['json', 'help', 'keep-source', 'no-progress'],
): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq >= 0 ? eq : undefined);
    if (eq >= 0) flags.set(name, arg.slice(eq + 1));
    else if (booleans.includes(name)) flags.set(name, true);
    else {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw usageError(`--${name} needs a value`);
      flags.set(name, value);
      i += 1;
    }
  }
  return { positionals, flags };
}

/** The string value of `--name`, or `fallback`. */
export function flag(args: ParsedArgs, name: string, fallback?: string): string | undefined {
  const value = args.flags.get(name);
  if (value === true) throw usageError(`--${name} needs a value`);
  return value ?? fallback;
}

/** Whether boolean `--name` is set. */
export function has(args: ParsedArgs, name: string): boolean {
  return args.flags.get(name) === true;
}

/** `--name` as a number, with a clear error for anything else. */
export function numberFlag(args: ParsedArgs, name: string): number | undefined {
  const raw = flag(args, name);
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw usageError(`--${name} must be a number, got ${JSON.stringify(raw)}`);
  return value;
}
