/**
 * The command line's grammar, on commander: every command and flag of `ferry`, each command with
 * its own `--help`, `--version` from package.json. Unknown flags and commands are refused with
 * the closest known one ("unknown option --downtime for `ferry migrate`; did you mean
 * --downtime-limit?"); every grammar error becomes a usage CliError (exit 2) for the one
 * top-level catch in main.ts. Values stay strings here: the commands read them through the
 * shared schemas (model/), as the workflows do.
 */
import { Command, type CommanderError } from 'commander';
import { closestName, validateId, type IdKind } from '../model';
import { CliError, CliExit, EXIT } from './errors';

/** The policy flags of `migrate` (and `demo`), as given. */
export interface PolicyFlags {
  downtimeLimit?: string;
  maxRounds?: string;
  budgetPerGib?: string;
  onGiveUp?: string;
  throttle?: string;
  store?: string;
  keepSource?: boolean;
  encrypt?: boolean;
}

/** The workload flags of `vm create` (and `demo`), as given. */
export interface WorkloadFlags {
  workload?: string;
  rate?: string;
  hotSet?: string;
}

/** Flags of `ferry up`. */
export interface UpFlags {
  hosts?: string;
  store?: string;
}

/** Flags of `ferry vm create`. */
export interface VmCreateFlags extends WorkloadFlags {
  host: string;
  memory: string;
  seed?: string;
  driver?: string;
  json?: boolean;
}

/** Flags of `ferry vm list` and `ferry vm destroy`. */
export interface VmHostsFlags {
  host?: string;
  hosts?: string;
  json?: boolean;
}

/** Flags of `ferry migrate`. */
export interface MigrateFlags extends PolicyFlags {
  to: string;
  from?: string;
  hosts?: string;
  json?: boolean;
  /** False with --no-progress. */
  progress: boolean;
}

/** Flags of `ferry demo`. */
export interface DemoFlags extends Omit<PolicyFlags, 'store' | 'keepSource'>, WorkloadFlags {
  json?: boolean;
  memory?: string;
  store?: string;
  vm?: string;
  driver?: string;
}

/** What each command does once its command line has parsed; main.ts wires them to the commands. */
export interface CommandActions {
  up(flags: UpFlags): Promise<void>;
  down(): Promise<void>;
  vmCreate(vmId: string, flags: VmCreateFlags): Promise<void>;
  vmList(flags: VmHostsFlags): Promise<void>;
  vmDestroy(vmId: string, flags: VmHostsFlags): Promise<void>;
  migrate(vmId: string, flags: MigrateFlags): Promise<void>;
  status(id: string, flags: { json?: boolean }): Promise<void>;
  throttle(id: string, value: string): Promise<void>;
  downtimeLimit(id: string, ms: string): Promise<void>;
  cancel(id: string, flags: { reason: string }): Promise<void>;
  demo(flags: DemoFlags): Promise<void>;
}

/** Shown after the global help. */
export const HELP_EPILOGUE = `
A <vm|migration> is a VM id or a migration's workflow id (migrate-<vm>). Ids are 1-64 letters,
digits, _ or -, starting with a letter or digit.

environment: FERRY_STATE_DIR, FERRY_STORE_DIR, FERRY_STORE, FERRY_TEMPORAL_PORT, FERRY_TEMPORAL_UI_PORT,
             FERRY_NATS_PORT, FERRY_TEMPORAL_ADDRESS, FERRY_NATS_URL, FERRY_S3_ENDPOINT (default http://127.0.0.1:8333),
             FERRY_S3_ACCESS_KEY_ID, FERRY_S3_SECRET_ACCESS_KEY, FERRY_S3_REGION
exit codes: 0 ok, 1 unexpected error, 2 bad input, 3 unknown VM/host/migration, 4 migration failed (source kept),
            5 services not running, 6 VM already migrating or cluster up on another store`;

/** `ferry vm create`, as the help and errors name a command. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** The CliError (or CliExit) a commander error of `cmd` stands for. */
function fromCommander(cmd: Command, err: CommanderError): Error {
  const where = commandPath(cmd);
  if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return new CliExit(EXIT.ok);
  // A command that needs a subcommand was given none: its help went to stderr.
  if (err.code === 'commander.help') return new CliExit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
  if (err.code === 'commander.unknownOption') {
    const flag = /'([^']+)'/.exec(err.message)?.[1] ?? '';
    const known = [...cmd.options.map((o) => o.long ?? ''), '--help'].filter((f) => f !== '');
    const near = flag.startsWith('--')
      ? closestName(
          flag.slice(2),
          known.map((f) => f.slice(2)),
        )
      : undefined;
    const hint = near !== undefined ? `did you mean --${near}?` : `see \`${where} --help\``;
    return new CliError(`unknown option ${flag} for \`${where}\`; ${hint}`, EXIT.usage);
  }
  if (err.code === 'commander.unknownCommand') {
    const name = cmd.args[0] ?? '';
    const near = closestName(
      name,
      cmd.commands.map((c) => c.name()),
    );
    const hint = near !== undefined ? `did you mean \`${where} ${near}\`?` : `see \`${where} --help\``;
    return new CliError(`unknown command ${JSON.stringify(name)}; ${hint}`, EXIT.usage);
  }
  return new CliError(`${err.message.replace(/^error: /, '')}; see \`${where} --help\``, EXIT.usage);
}

/** A parser of an id argument or flag: the value if it matches the one id pattern, else InvalidInputError (exit 2). */
function id(kind: IdKind, name: string): (value: string) => string {
  return (value) => validateId(kind, value, name);
}

/** Adds subcommand `name` of `parent`, with ferry's error handling. */
function sub(parent: Command, name: string, description: string): Command {
  const cmd = parent.command(name).description(description);
  return cmd.exitOverride((err) => {
    throw fromCommander(cmd, err);
  });
}

function addPolicyFlags(cmd: Command, withStore: boolean): Command {
  cmd
    .option('--downtime-limit <ms>', 'largest expected downtime at which to switch over (default 300)')
    .option('--max-rounds <n>', 'pre-copy rounds before giving up (default 30)')
    .option('--budget-per-gib <s>', 'completion budget in seconds per GiB of guest memory (default 150)')
    .option('--on-give-up <action>', 'abort | force-switchover (default abort)')
    .option('--throttle <policy>', 'sdps | history | auto-converge | none (default sdps)');
  if (withStore)
    cmd.option('--store <store>', 'shared store: an absolute or relative directory, or s3://bucket/prefix');
  return cmd;
}

function addWorkloadFlags(cmd: Command): Command {
  return cmd
    .option('--workload <type>', 'idle | random | hotset | sweep')
    .option('--rate <rate>', 'write rate of the workload, e.g. 20MB/s or 20MiB/s (default 20MB/s)')
    .option('--hot-set <size>', 'size of the hot set of a hotset workload (default 16MiB)');
}

/** The `ferry` program; `actions` run the commands, `version` is what `--version` prints. */
export function buildProgram(actions: CommandActions, version: string): Command {
  const program = new Command('ferry')
    .description('live migration of running VMs between hosts')
    .version(version, '-V, --version', "print ferry's version")
    .helpCommand('help [command]', 'show the help of a command')
    .showSuggestionAfterError(false)
    .configureOutput({ outputError: () => undefined })
    .addHelpText('after', HELP_EPILOGUE);
  program.exitOverride((err) => {
    throw fromCommander(program, err);
  });

  sub(program, 'up', 'start Temporal (with Web UI), nats-server, the orchestrator and host agents')
    .option('--hosts <h1,h2>', 'host agents to start (default h1,h2)')
    .option(
      '--store <kind>',
      's3: also SeaweedFS, the hosts storing pages in s3://ferry/pages; dir: the store directory',
    )
    .action((flags: UpFlags) => actions.up(flags));
  sub(program, 'down', 'stop all of it, VMs and SeaweedFS included').action(() => actions.down());

  const vm = sub(program, 'vm', 'create, list and destroy VMs');
  addWorkloadFlags(
    sub(vm, 'create', 'start a VM: simulated, or a Linux guest in QEMU')
      .argument('<vm>', 'id of the new VM', id('vmId', 'vmId'))
      .option('--host <host>', 'host to start it on', id('hostId', '--host'), 'h1')
      .option('--memory <size>', 'guest memory, e.g. 256MiB', '256MiB')
      .option('--seed <n>', 'seed of page choice and content')
      .option('--driver <name>', 'hypervisor: simulated or qemu (a Linux guest; 64MiB-4GiB)', 'simulated')
      .option('--json', 'print the VM as JSON'),
  ).action((vmId: string, flags: VmCreateFlags) => actions.vmCreate(vmId, flags));
  sub(vm, 'list', 'list VMs per host')
    .option('--hosts <h1,h2>', 'hosts to list (default h1,h2)')
    .option('--json', 'print the listing as JSON')
    .action((flags: VmHostsFlags) => actions.vmList(flags));
  sub(vm, 'destroy', 'stop and remove a VM')
    .argument('<vm>', 'id of the VM', id('vmId', 'vmId'))
    .option('--host <host>', 'host it runs on (default: the one that runs it)', id('hostId', '--host'))
    .option('--hosts <h1,h2>', 'hosts to look for it on (default h1,h2)')
    .action((vmId: string, flags: VmHostsFlags) => actions.vmDestroy(vmId, flags));

  addPolicyFlags(
    sub(program, 'migrate', 'live-migrate a VM, with a progress bar on a terminal')
      .argument('<vm>', 'id of the VM', id('vmId', 'vmId'))
      .requiredOption('--to <host>', 'destination host', id('hostId', '--to'))
      .option('--from <host>', 'source host (default: the one that runs it)', id('hostId', '--from'))
      .option('--hosts <h1,h2>', 'hosts to look for the VM on (default h1,h2)'),
    true,
  )
    .option('--keep-source', 'keep the source VM stunned after the switchover, for comparison')
    .option('--encrypt', 'encrypt page data on the stream with AES-256-GCM (the page file stays in clear)')
    .option('--json', 'print the result as one JSON object')
    .option('--no-progress', 'no progress bar')
    .action((vmId: string, flags: MigrateFlags) => actions.migrate(vmId, flags));
  sub(program, 'status', 'progress of a running migration or the result of an ended one')
    .argument('<vm|migration>', 'VM id or migration id', id('migrationId', 'vm or migration id'))
    .option('--json', 'print the status as JSON')
    .action((id: string, flags: { json?: boolean }) => actions.status(id, flags));
  sub(program, 'throttle', "pin the running migration's vCPU throttle (0..99), or give it back to the policy")
    .argument('<vm|migration>', 'VM id or migration id', id('migrationId', 'vm or migration id'))
    .argument('<percent|policy>', 'percent of the vCPU descheduled, or `policy`')
    .action((id: string, value: string) => actions.throttle(id, value));
  sub(program, 'downtime-limit', "change the running migration's downtime limit")
    .argument('<vm|migration>', 'VM id or migration id', id('migrationId', 'vm or migration id'))
    .argument('<ms>', 'new limit (ms)')
    .action((id: string, ms: string) => actions.downtimeLimit(id, ms));
  sub(program, 'cancel', 'stop a migration before its switchover; the source keeps running')
    .argument('<vm|migration>', 'VM id or migration id', id('migrationId', 'vm or migration id'))
    .option('--reason <text>', 'why, as the result will say', 'cancelled from the ferry CLI')
    .action((id: string, flags: { reason: string }) => actions.cancel(id, flags));
  addWorkloadFlags(
    addPolicyFlags(
      sub(program, 'demo', 'all of it in one go: up, create a VM on h1, migrate it to h2, verify')
        .option('--json', 'print the result as one JSON object, last')
        .option('--memory <size>', 'guest memory (default 256MiB)')
        .option('--store <kind>', 's3: run on the embedded SeaweedFS; dir: on the store directory')
        .option('--vm <id>', 'id of the demo VM (default demo-<time>)', id('vmId', '--vm'))
        .option('--driver <name>', 'hypervisor: simulated (default) or qemu'),
      false,
    ),
  ).action((flags: DemoFlags) => actions.demo(flags));
  return program;
}

/**
 * A flag's value as a schema should see it: a number when it reads as one, else the text itself,
 * so that "many" is refused as `got "many"` and -5 as `got -5`.
 */
export function numberOrText(raw: string): number | string {
  const value = Number(raw);
  return raw.trim() !== '' && Number.isFinite(value) ? value : raw;
}
