/**
 * `ferry`: the command line. One top-level catch: a known error prints one actionable line and
 * exits with its code (see EXIT); an unknown one prints its stack and exits 1.
 */
import { ferryEnvironment } from '../temporal-config';
import { clusterDown, clusterUp } from '../infra/ferry-cluster';
import { parseArgs, type ParsedArgs } from './args';
import { CliError, EXIT, usageError } from './errors';
import { FerryClient } from './ferry-client';
import { demoCommand, embeddedStoreFromArgs } from './demo-command';
import {
  cancelCommand,
  downtimeLimitCommand,
  migrateCommand,
  statusCommand,
  throttleCommand,
} from './migrate-commands';
import { hostsFromArgs, vmCommand } from './vm-commands';

const HELP = `ferry — live migration of running VMs between hosts

usage: ferry <command> [options]

  up [--hosts h1,h2] [--store s3]    start Temporal (with Web UI), nats-server, the orchestrator and host agents;
                                     --store s3: also SeaweedFS, and the hosts store pages in s3://ferry/pages
  down                               stop all of it, VMs and SeaweedFS included
  vm create <vm> --host <h> [--memory 256MiB] [--workload idle|random|hotset|sweep] [--rate 20MB/s] [--hot-set 16MiB] [--seed n]
  vm list [--hosts h1,h2] [--json]   list VMs per host
  vm destroy <vm> [--host <h>]       stop and remove a VM
  migrate <vm> --to <h> [--from <h>] [--downtime-limit ms] [--max-rounds n] [--budget-per-gib s]
          [--on-give-up abort|force-switchover] [--throttle sdps|history|auto-converge|none]
          [--store dir|s3://bucket/prefix] [--keep-source] [--json]
                                     live-migrate a VM, with a progress bar on a terminal
  status <migration|vm> [--json]     progress of a running migration or the result of an ended one
  throttle <migration|vm> <percent|policy>
                                     pin the running migration's vCPU throttle (0..99), or give it back to the policy
  downtime-limit <migration|vm> <ms> change the running migration's downtime limit
  cancel <migration|vm>              stop a migration before its switchover; the source keeps running
  demo [--json] [--memory 256MiB] [--store s3]
                                     all of it in one go: up, create a VM on h1, migrate it to h2, verify

environment: FERRY_STATE_DIR, FERRY_STORE_DIR, FERRY_STORE, FERRY_TEMPORAL_PORT, FERRY_TEMPORAL_UI_PORT,
             FERRY_NATS_PORT, FERRY_TEMPORAL_ADDRESS, FERRY_NATS_URL, FERRY_S3_ENDPOINT (default http://127.0.0.1:8333),
             FERRY_S3_ACCESS_KEY_ID, FERRY_S3_SECRET_ACCESS_KEY, FERRY_S3_REGION
exit codes: 0 ok, 1 unexpected error, 2 bad input, 3 unknown VM/host/migration, 4 migration failed (source kept),
            5 services not running, 6 VM already migrating or cluster up on another store`;

async function withClient(fn: (client: FerryClient) => Promise<void>): Promise<void> {
  const client = await FerryClient.connect();
  try {
    await fn(client);
  } finally {
    await client.close();
  }
}

async function run(args: ParsedArgs): Promise<void> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const command = args.positionals[0];
  if (command === undefined || command === 'help' || args.flags.has('help')) {
    out(HELP);
    return;
  }
  switch (command) {
    case 'up': {
      const store = embeddedStoreFromArgs(args);
      const lines = await clusterUp(ferryEnvironment(), hostsFromArgs(args), store === undefined ? {} : { store });
      for (const line of lines) out(line);
      return;
    }
    case 'down':
      for (const line of await clusterDown(ferryEnvironment())) out(line);
      return;
    case 'vm':
      return withClient((c) => vmCommand(c, args, out));
    case 'migrate':
      return withClient((c) => migrateCommand(c, args, out));
    case 'status':
      return withClient((c) => statusCommand(c, args, out));
    case 'cancel':
      return withClient((c) => cancelCommand(c, args, out));
    case 'throttle':
      return withClient((c) => throttleCommand(c, args, out));
    case 'downtime-limit':
      return withClient((c) => downtimeLimitCommand(c, args, out));
    case 'demo':
      return demoCommand(args, out, log);
    default:
      throw usageError(`unknown command ${JSON.stringify(command)}; see \`ferry help\``);
  }
}

/** Entry point: parses argv, runs the command, maps errors to exit codes. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await run(parseArgs(argv));
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`ferry: ${err.message}\n`);
      return err.exitCode;
    }
    const named = err as { name?: string; message?: string };
    if (named.name === 'ClusterStoreMismatchError') {
      process.stderr.write(`ferry: ${named.message}\n`);
      return EXIT.conflict;
    }
    if (
      named.name === 'EmbeddedS3EndpointError' ||
      named.name === 'InvalidSizeError' ||
      named.name === 'InvalidVmSpecError' ||
      named.name === 'InvalidWorkloadError'
    ) {
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
