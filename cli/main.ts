/**
 * `ferry`: the command line. The grammar lives in args.ts (commander); here each command is wired
 * to what it does, with one top-level catch: a known error prints one actionable line and exits
 * with its code (see EXIT); an unknown one prints its stack and exits 1.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ferryEnvironment, projectRoot } from '../temporal-config';
import { clusterDown, clusterUp } from '../infra/ferry-cluster';
import { buildProgram, type CommandActions } from './args';
import { CliError, CliExit, EXIT } from './errors';
import { FerryClient } from './ferry-client';
import { demoCommand, embeddedStoreFromFlag } from './demo-command';
import {
  cancelCommand,
  downtimeLimitCommand,
  downtimeLimitFromArg,
  migrateCommand,
  policyFromFlags,
  statusCommand,
  throttleCommand,
  throttleFromArg,
} from './migrate-commands';
import { hostsFromFlag, vmCreateCommand, vmDestroyCommand, vmListCommand } from './vm-commands';

/** Errors of other areas that are the user's input, printed as one line with exit code 2. */
const USAGE_ERRORS = new Set([
  'EmbeddedS3EndpointError',
  'InvalidInputError',
  'InvalidMigrationOptionError',
  'InvalidSizeError',
  'InvalidVmSpecError',
  'InvalidWorkloadError',
]);

/** ferry's version, from package.json. */
export function ferryVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

async function withClient(fn: (client: FerryClient) => Promise<void>): Promise<void> {
  const client = await FerryClient.connect();
  try {
    await fn(client);
  } finally {
    await client.close();
  }
}

/**
 * The commands, writing results to `out` and progress notes to `log`. Values that need no
 * cluster are read before connecting, so bad input fails with exit 2 even when nothing runs.
 */
function actions(out: (line: string) => void, log: (line: string) => void): CommandActions {
  return {
    up: async (flags) => {
      const store = embeddedStoreFromFlag(flags.store);
      const hosts = hostsFromFlag(flags.hosts);
      for (const line of await clusterUp(ferryEnvironment(), hosts, store === undefined ? {} : { store })) out(line);
    },
    down: async () => {
      for (const line of await clusterDown(ferryEnvironment())) out(line);
    },
    vmCreate: (vmId, flags) => withClient((c) => vmCreateCommand(c, vmId, flags, out)),
    vmList: (flags) => withClient((c) => vmListCommand(c, flags, out)),
    vmDestroy: (vmId, flags) => withClient((c) => vmDestroyCommand(c, vmId, flags, out)),
    migrate: (vmId, flags) => {
      const policy = policyFromFlags(flags);
      return withClient((c) => migrateCommand(c, vmId, flags, policy, out));
    },
    status: (id, flags) => withClient((c) => statusCommand(c, id, flags, out)),
    throttle: (id, value) => {
      const percent = throttleFromArg(value);
      return withClient((c) => throttleCommand(c, id, percent, out));
    },
    downtimeLimit: (id, value) => {
      const ms = downtimeLimitFromArg(value);
      return withClient((c) => downtimeLimitCommand(c, id, ms, out));
    },
    cancel: (id, flags) => withClient((c) => cancelCommand(c, id, flags, out)),
    demo: (flags) => demoCommand(flags, out, log),
  };
}

/** Entry point: parses argv, runs the command, maps errors to exit codes. */
export async function main(argv: readonly string[]): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  try {
    const program = buildProgram(actions(out, log), ferryVersion());
    if (argv.length === 0) {
      program.outputHelp();
      return EXIT.ok;
    }
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CliExit) return err.exitCode;
    if (err instanceof CliError) {
      process.stderr.write(`ferry: ${err.message}\n`);
      return err.exitCode;
    }
    const named = err as { name?: string; message?: string };
    if (named.name === 'ClusterStoreMismatchError') {
      process.stderr.write(`ferry: ${named.message}\n`);
      return EXIT.conflict;
    }
    if (named.name !== undefined && USAGE_ERRORS.has(named.name)) {
      process.stderr.write(`ferry: ${named.message}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`ferry: unexpected error\n${(err as Error)?.stack ?? String(err)}\n`);
    return EXIT.unknown;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
