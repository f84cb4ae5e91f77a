/** `ferry migrate`, `ferry status`, `ferry cancel`. */
import * as path from 'node:path';
import { openPageStore, parseStoreRef } from '../store/open-store';
import { resolveMigrationOptions, type MigrationOptions } from '../workflows/policy';
import type { MigrateVmInput, MigrationResult } from '../workflows/types';
import { flag, has, numberFlag, type ParsedArgs } from './args';
import { CliError, EXIT, usageError } from './errors';
import { MigrationFailedCliError, type FerryClient } from './ferry-client';
import { ProgressView, progressLine, resultSummary } from './progress-view';
import { hostsFromArgs } from './vm-commands';

/** How often the progress query is polled (ms). */
export const PROGRESS_POLL_MS = 250;

/** Reads the policy flags of `migrate` into MigrationOptions, validated. */
export function policyFromArgs(args: ParsedArgs): MigrationOptions {
  const policy: MigrationOptions = {};
  const downtime = numberFlag(args, 'downtime-limit');
  if (downtime !== undefined) policy.downtimeLimitMs = downtime;
  const maxRounds = numberFlag(args, 'max-rounds');
  if (maxRounds !== undefined) policy.maxRounds = maxRounds;
  const budget = numberFlag(args, 'budget-per-gib');
  if (budget !== undefined) policy.completionBudgetSecPerGiB = budget;
  const giveUp = flag(args, 'on-give-up');
  if (giveUp !== undefined) policy.onGiveUp = giveUp as MigrationOptions['onGiveUp'] & string;
  const throttle = flag(args, 'throttle');
  if (throttle !== undefined) policy.throttle = throttle as MigrationOptions['throttle'] & string;
  const store = flag(args, 'store');
  if (store !== undefined) policy.store = absoluteStore(store);
  if (has(args, 'keep-source')) policy.keepSourceAfterSwitchover = true;
  try {
    resolveMigrationOptions(policy);
  } catch (err) {
    throw usageError((err as Error).message);
  }
  return policy;
}

/** `store` with a directory made absolute here, where the user's relative path means something. */
function absoluteStore(store: string): string {
  try {
    return parseStoreRef(store).kind === 'directory' ? path.resolve(store) : store;
  } catch (err) {
    throw usageError(`--store: ${(err as Error).message}`);
  }
}

/** Starts a migration and follows it to its end; returns the result (throws on failure). */
export async function runMigration(
  client: FerryClient,
  input: MigrateVmInput,
  opts: { showProgress: boolean; stream: NodeJS.WriteStream },
): Promise<MigrationResult> {
  const workflowId = await client.startMigration(input);
  const view = opts.showProgress ? new ProgressView(opts.stream) : undefined;
  let finished = false;
  const poll = (async () => {
    while (!finished) {
      const p = await client.progress(workflowId).catch(() => undefined);
      if (p && view && !finished) {
        // Between round ends the query knows only the last round; the round activity's heartbeat
        // says how far the current one has come.
        const beat =
          p.phase === 'pre-copy' ? await client.roundHeartbeat(workflowId).catch(() => undefined) : undefined;
        view.update(
          beat && beat.round === p.round ? { ...p, pagesRemaining: Math.max(0, p.pagesRemaining - beat.pagesSent) } : p,
        );
      }
      await new Promise((r) => setTimeout(r, PROGRESS_POLL_MS));
    }
  })();
  try {
    return await client.result(workflowId);
  } finally {
    finished = true;
    await poll;
    view?.end();
  }
}

/** `ferry migrate <vm> --to <host> [--from <host>] [policy flags] [--json]`. */
export async function migrateCommand(
  client: FerryClient,
  args: ParsedArgs,
  out: (line: string) => void,
): Promise<void> {
  const vmId = args.positionals[1];
  const to = flag(args, 'to');
  if (!vmId || !to)
    throw usageError(
      'usage: ferry migrate <vm-id> --to <host> [--from <host>] [--downtime-limit ms] [--max-rounds n] ' +
        '[--throttle sdps|history|auto-converge|none] [--store dir|s3://bucket/prefix] [--json]',
    );
  const policy = policyFromArgs(args);
  // The hosts check the store again; checking here first fails fast, before anything has started.
  if (policy.store !== undefined)
    await openPageStore(policy.store)
      .assertWritable()
      .catch((err: Error) => {
        throw new CliError(err.message, EXIT.usage);
      });
  await client.requireHost(to);
  const from = flag(args, 'from') ?? (await client.locateVm(vmId, hostsFromArgs(args))).hostId;
  if (from === to) throw usageError(`VM ${vmId} already runs on ${to}: source and destination are the same host`);
  await client.requireHost(from);
  const json = has(args, 'json');
  try {
    const result = await runMigration(
      client,
      { vmId, sourceHost: from, destinationHost: to, policy },
      {
        showProgress: !json && !has(args, 'no-progress'),
        stream: process.stderr,
      },
    );
    out(json ? JSON.stringify(result) : resultSummary(result));
  } catch (err) {
    if (json && err instanceof MigrationFailedCliError && err.result) out(JSON.stringify(err.result));
    throw err;
  }
}

/** `ferry status <migration> [--json]`. */
export async function statusCommand(client: FerryClient, args: ParsedArgs, out: (line: string) => void): Promise<void> {
  const id = args.positionals[1];
  if (!id) throw usageError('usage: ferry status <migration-id | vm-id>');
  const workflowId = id.startsWith('migrate-') ? id : `migrate-${id}`;
  const status = await client.status(workflowId);
  if (has(args, 'json')) {
    out(JSON.stringify({ workflowId, ...status }));
    return;
  }
  out(`${workflowId}: ${status.status}`);
  if (status.progress) out(progressLine(status.progress, false));
  if (status.result) out(resultSummary(status.result));
}

/** The workflow id named by a migration id (`migrate-<vm>`) or a VM id. */
function migrationIdFromArgs(args: ParsedArgs, usage: string): string {
  const id = args.positionals[1];
  if (!id) throw usageError(`usage: ${usage}`);
  return id.startsWith('migrate-') ? id : `migrate-${id}`;
}

/**
 * `ferry throttle <migration|vm> <percent|policy>`: pins the running migration's vCPU throttle,
 * or (`policy`) hands it back to the migration's policy.
 */
export async function throttleCommand(
  client: FerryClient,
  args: ParsedArgs,
  out: (line: string) => void,
): Promise<void> {
  const usage = 'ferry throttle <migration-id | vm-id> <percent 0..99 | policy>';
  const workflowId = migrationIdFromArgs(args, usage);
  const value = args.positionals[2];
  if (value === undefined) throw usageError(`usage: ${usage}`);
  const percent = value === 'policy' ? null : Number(value);
  if (percent !== null && (value.trim() === '' || !Number.isFinite(percent)))
    throw usageError(`throttle must be a percent from 0 to 99 or "policy", got ${JSON.stringify(value)}`);
  const answer = await client.setThrottle(workflowId, percent);
  out(
    answer.pinned
      ? `${workflowId}: throttle pinned at ${answer.throttlePercent}% until \`ferry throttle ${args.positionals[1]} policy\``
      : `${workflowId}: throttle back to the policy, now ${answer.throttlePercent}%`,
  );
}

/** `ferry downtime-limit <migration|vm> <ms>`: changes the running migration's downtime limit. */
export async function downtimeLimitCommand(
  client: FerryClient,
  args: ParsedArgs,
  out: (line: string) => void,
): Promise<void> {
  const usage = 'ferry downtime-limit <migration-id | vm-id> <ms>';
  const workflowId = migrationIdFromArgs(args, usage);
  const value = args.positionals[2];
  if (value === undefined) throw usageError(`usage: ${usage}`);
  const ms = Number(value);
  if (!Number.isInteger(ms) || ms <= 0)
    throw usageError(`downtime limit must be a positive integer of ms, got ${JSON.stringify(value)}`);
  const answer = await client.setDowntimeLimit(workflowId, ms);
  out(`${workflowId}: downtime limit ${answer.downtimeLimitMs} ms from the next round's end`);
}

/** `ferry cancel <migration>`. */
export async function cancelCommand(client: FerryClient, args: ParsedArgs, out: (line: string) => void): Promise<void> {
  const id = args.positionals[1];
  if (!id) throw usageError('usage: ferry cancel <migration-id | vm-id>');
  const workflowId = await client.findRunningMigration(id);
  await client.cancel(workflowId, flag(args, 'reason', 'cancelled from the ferry CLI') as string);
  out(`cancel requested for ${workflowId}; the source VM keeps running`);
}
