/**
 * `npm run soak`: a fault soak on a real cluster (Temporal dev server, nats-server, orchestrator
 * and two host agents as processes, VMM processes per guest). A few fault-free migrations set the
 * baseline time; then each of N migrations of a fresh running guest gets one fault drawn at random
 * from soak/faults.ts and soak/forgery-faults.ts, at a random moment. Each ends with its checks: how it ended, where the VM
 * runs, corrupted pages, and whether two copies ever ran at once. Prints a table and a summary,
 * or one JSON object with `--json`; exits 1 if a page was corrupted, two copies ran, or an outcome
 * was not one its fault allows. Progress goes to stderr.
 *
 * Options: --migrations N (default 20), --seed S (default: from the clock; printed), --baseline B
 * (fault-free runs, default 3), --store directory|s3 (default directory; s3: a SeaweedFS server of
 * the soak's cluster), --json.
 */
import { Command, CommanderError } from 'commander';
import { CliError, EXIT } from '../cli/errors';
import { FerryClient } from '../cli/ferry-client';
import { startTestCluster, type TestCluster } from '../harness/test-cluster';
import { SOAK_FAULTS, type SoakFault } from './faults';
import { FORGERY_FAULTS } from './forgery-faults';
import { formatReport, soakPassed, summarize } from './report';
import { runSoakMigration, type SoakEnv, type SoakRow } from './run-migration';
import { drawFromDeck, SeededRandom } from './seeded-random';
import { faultHookAvailable } from './vmm-probe';

/** Faulted migrations of a soak. */
export const DEFAULT_MIGRATIONS = 20;
/** Fault-free migrations that set the baseline time. */
export const DEFAULT_BASELINE_RUNS = 3;
const USAGE =
  'usage: node dist/soak/main.js [--migrations N] [--seed S] [--baseline B] [--store directory|s3] [--json]';
/** A timed fault lands within this share of the baseline pre-copy, after the first page batch. */
const PRECOPY_WINDOW_SHARE = 0.8;

/** Options of the soak (all optional). */
export interface SoakOptions {
  migrations?: number | undefined;
  baselineRuns?: number | undefined;
  seed?: number | undefined;
  store?: string | undefined;
  json?: boolean | undefined;
}

/** SoakOptions validated, defaults applied. */
export interface ResolvedSoakOptions {
  migrations: number;
  baselineRuns: number;
  seed: number;
  store: 'directory' | 's3';
  json: boolean;
}

/** Validates `raw`; throws RangeError naming the option and its bad value. */
export function resolveSoakOptions(raw: SoakOptions): ResolvedSoakOptions {
  const count = (name: string, value: number | undefined, fallback: number, min: number): number => {
    const v = value ?? fallback;
    if (!Number.isInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${v}`);
    return v;
  };
  const store = raw.store ?? 'directory';
  if (store !== 'directory' && store !== 's3')
    throw new RangeError(`--store must be directory or s3, got ${JSON.stringify(store)}`);
  return {
    store,
    migrations: count('--migrations', raw.migrations, DEFAULT_MIGRATIONS, 1),
    baselineRuns: count('--baseline', raw.baselineRuns, DEFAULT_BASELINE_RUNS, 1),
    seed: count('--seed', raw.seed, Date.now() % 2 ** 31, 0),
    json: raw.json ?? false,
  };
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Whether the VMMs have the fault hook, asked of a small throwaway guest. */
async function probeFaultHook(cluster: TestCluster, ferry: FerryClient): Promise<boolean> {
  const vmId = 'soak-hook-probe';
  await ferry.createVm('h1', { vmId, memoryBytes: 16 * 2 ** 20, workload: { type: 'idle' } });
  try {
    return await faultHookAvailable(cluster.env, 'h1', vmId);
  } finally {
    await ferry.destroyVm('h1', vmId);
  }
}

/** Runs one migration; an error of the soak itself becomes an unexpected row, so the soak goes on. */
async function migrate(env: SoakEnv, index: number, seed: number, vmId: string, fault?: SoakFault): Promise<SoakRow> {
  const [sourceHost, destinationHost] = index % 2 === 0 ? ['h1', 'h2'] : ['h2', 'h1'];
  // Every other pair of migrations encrypts, so both directions and every fault meet sealed pages.
  const encrypt = Math.floor(index / 2) % 2 === 1;
  try {
    const spec = { vmId, sourceHost, destinationHost, seed, encrypt, ...(fault ? { fault } : {}) };
    return await runSoakMigration(env, spec);
  } catch (err) {
    for (const host of [sourceHost, destinationHost]) await env.ferry.destroyVm(host, vmId).catch(() => undefined);
    const message = err instanceof Error ? err.message : String(err);
    return {
      vmId,
      sourceHost,
      destinationHost,
      encrypted: encrypt,
      fault: fault?.name ?? 'none',
      item: fault?.item ?? 0,
      moment: '-',
      missed: false,
      outcome: 'failed',
      workflowOutcome: 'unknown',
      reason: '',
      runningOn: '?',
      totalMs: 0,
      precopyMs: 0,
      corruptedPages: 0,
      forgedMessages: fault?.forges === true ? 0 : undefined,
      rejectedMessages: 0,
      copiesRunning: 0,
      twoCopiesEvents: 0,
      longestNoCopyMs: 0,
      expected: false,
      problems: [`soak error: ${message}`],
    };
  }
}

function describeRow(label: string, r: SoakRow): string {
  return `${label} ${r.fault} @ ${r.moment}: ${r.outcome} on ${r.runningOn}, ${r.totalMs} ms, corrupt ${r.corruptedPages}${r.expected ? '' : ' UNEXPECTED'}`;
}

async function soak(cluster: TestCluster, ferry: FerryClient, options: ResolvedSoakOptions): Promise<boolean> {
  const random = new SeededRandom(options.seed);
  const env: SoakEnv = { cluster, ferry, random, precopyWindowMs: 0 };
  const hook = await probeFaultHook(cluster, ferry);
  const faults = [...SOAK_FAULTS, ...FORGERY_FAULTS].filter((f) => hook || !f.hook);
  const skipped: string[] = [];
  if (!hook) skipped.push('items 7-8 at fault points: the VMMs have no migration.armFault');
  log(`soak seed ${options.seed}, store ${cluster.env.store}; faults: ${faults.map((f) => f.name).join(', ')}`);

  const baseline: SoakRow[] = [];
  for (let i = 0; i < options.baselineRuns; i += 1) {
    baseline.push(await migrate(env, i, 1 + i, `soak-base-${i + 1}`));
    log(describeRow(`baseline ${i + 1}/${options.baselineRuns}`, baseline[i] as SoakRow));
  }
  const precopyMs = baseline.reduce((sum, r) => sum + r.precopyMs, 0) / baseline.length;
  env.precopyWindowMs = Math.max(50, Math.round(precopyMs * PRECOPY_WINDOW_SHARE));

  const rows: SoakRow[] = [];
  const draw = drawFromDeck(random, faults, options.migrations);
  for (const [i, fault] of draw.entries()) {
    rows.push(await migrate(env, i, 100 + i, `soak-${i + 1}`, fault));
    log(describeRow(`${i + 1}/${options.migrations}`, rows[i] as SoakRow));
  }
  const report = summarize(options.seed, baseline, rows, skipped);
  console.log(options.json ? JSON.stringify(report) : formatReport(report));
  return soakPassed(report);
}

/** The soak's command line; unknown flags are refused (a CommanderError). */
function parseSoakArgs(argv: string[]): SoakOptions {
  const program = new Command('soak')
    .option('--migrations <n>', 'faulted migrations', Number)
    .option('--seed <s>', 'seed of the fault draw', Number)
    .option('--baseline <b>', 'fault-free runs', Number)
    .option('--store <kind>', 'directory | s3')
    .option('--json', 'one JSON object')
    .exitOverride()
    .configureOutput({ outputError: () => undefined });
  program.parse(argv, { from: 'user' });
  const o = program.opts<{ migrations?: number; seed?: number; baseline?: number; store?: string; json?: boolean }>();
  return { migrations: o.migrations, baselineRuns: o.baseline, seed: o.seed, store: o.store, json: o.json };
}

async function main(): Promise<number> {
  const options = resolveSoakOptions(parseSoakArgs(process.argv.slice(2)));
  // The host agents reach nats-server through a proxy the stream-stall faults can freeze.
  const cluster = await startTestCluster(['h1', 'h2'], { natsProxy: true, store: options.store });
  let stopping: Promise<void> | undefined;
  const stopCluster = (): Promise<void> => (stopping ??= cluster.stop());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: stopping the soak cluster`);
      // The soak's client stays open: closing it under calls in flight throws from gRPC's timers.
      void stopCluster().finally(() => process.exit(130));
    });
  }
  try {
    const ferry = await FerryClient.connect(cluster.temporal.address);
    try {
      return (await soak(cluster, ferry, options)) ? 0 : 1;
    } finally {
      await ferry.close();
    }
  } finally {
    await stopCluster();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof CommanderError && err.exitCode === 0) process.exit(0);
    // A bad option is the user's to fix: one line. Anything else is the soak's own failure: its stack.
    const usage =
      err instanceof RangeError ||
      err instanceof CommanderError ||
      (err instanceof CliError && err.exitCode === EXIT.usage);
    console.error(usage ? `soak: ${(err as Error).message}\n${USAGE}` : err);
    process.exit(2);
  },
);
