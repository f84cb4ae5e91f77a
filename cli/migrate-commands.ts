/** `ferry migrate`, `ferry status`, `ferry cancel`. */
import * as path from 'node:path';
import { openPageStore, parseStoreRef } from '../store/open-store';
import { resolveMigrationOptions, validateDowntimeLimitInput, type MigrationOptions } from '../workflows/policy';
import type { MigrateVmInput, MigrationResult } from '../workflows/types';
import { numberOrText, type MigrateFlags, type PolicyFlags } from './args';
import { CliError, EXIT, usageError } from './errors';
import { MigrationFailedCliError, migrationWorkflowId, type FerryClient } from './ferry-client';
import { ProgressView, progressLine, resultSummary } from './progress-view';
import { hostsFromFlag } from './vm-commands';

/** How often the progress query is polled (ms). */
export const PROGRESS_POLL_MS = 250;

/** Reads the policy flags of `migrate` into MigrationOptions, validated by the workflow's schema. */
export function policyFromFlags(flags: PolicyFlags): MigrationOptions {
  const raw: Record<string, unknown> = {};
  if (flags.downtimeLimit !== undefined) raw['downtimeLimitMs'] = numberOrText(flags.downtimeLimit);
  if (flags.maxRounds !== undefined) raw['maxRounds'] = numberOrText(flags.maxRounds);
  if (flags.budgetPerGib !== undefined) raw['completionBudgetSecPerGiB'] = numberOrText(flags.budgetPerGib);
  if (flags.onGiveUp !== undefined) raw['onGiveUp'] = flags.onGiveUp;
  if (flags.throttle !== undefined) raw['throttle'] = flags.throttle;
  if (flags.store !== undefined) raw['store'] = absoluteStore(flags.store);
  if (flags.keepSource === true) raw['keepSourceAfterSwitchover'] = true;
  if (flags.encrypt === true) raw['encrypt'] = true;
  try {
    resolveMigrationOptions(raw);
  } catch (err) {
    throw usageError((err as Error).message);
  }
  return raw as MigrationOptions;
}

/** The workflow id named by a migration id (`migrate-<vm>`) or a VM id (checked by args.ts). */
export function workflowIdOf(id: string): string {
  return id.startsWith('migrate-') ? id : migrationWorkflowId(id);
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

/**
 * `ferry migrate <vm> --to <host> [--from <host>] [policy flags] [--json]`; `policy` is
 * policyFromFlags(flags), read before connecting so a bad flag fails without a cluster.
 */
export async function migrateCommand(
  client: FerryClient,
  vmId: string,
  flags: MigrateFlags,
  policy: MigrationOptions,
  out: (line: string) => void,
): Promise<void> {
  const to = flags.to;
  // The hosts check the store again; checking here first fails fast, before anything has started.
  if (policy.store !== undefined)
    await openPageStore(policy.store)
      .assertWritable()
      .catch((err: Error) => {
        throw new CliError(err.message, EXIT.usage);
      });
  await client.requireHost(to);
  const from = flags.from ?? (await client.locateVm(vmId, hostsFromFlag(flags.hosts))).hostId;
  if (from === to) throw usageError(`VM ${vmId} already runs on ${to}: source and destination are the same host`);
  await client.requireHost(from);
  const json = flags.json === true;
  try {
    const result = await runMigration(
      client,
      { vmId, sourceHost: from, destinationHost: to, policy },
      { showProgress: !json && flags.progress, stream: process.stderr },
    );
    out(json ? JSON.stringify(result) : resultSummary(result));
  } catch (err) {
    if (json && err instanceof MigrationFailedCliError && err.result) out(JSON.stringify(err.result));
    throw err;
  }
}

/** `ferry status <migration|vm> [--json]`. */
export async function statusCommand(
  client: FerryClient,
  id: string,
  flags: { json?: boolean },
  out: (line: string) => void,
): Promise<void> {
  const workflowId = workflowIdOf(id);
  const status = await client.status(workflowId);
  if (flags.json === true) {
    out(JSON.stringify({ workflowId, ...status }));
    return;
  }
  out(`${workflowId}: ${status.status}`);
  if (status.progress) out(progressLine(status.progress, false));
  if (status.result) out(resultSummary(status.result));
}

/** The `<percent|policy>` of `ferry throttle`: a number (its range is the workflow validator's), or null for `policy`. */
export function throttleFromArg(value: string): number | null {
  const percent = value === 'policy' ? null : numberOrText(value);
  if (typeof percent === 'string')
    throw usageError(`throttle must be a percent from 0 to 99 or "policy", got ${JSON.stringify(value)}`);
  return percent;
}

/**
 * `ferry throttle <migration|vm> <percent|policy>`: pins the running migration's vCPU throttle,
 * or (`policy`) hands it back to the migration's policy. The workflow's validator checks the value.
 */
export async function throttleCommand(
  client: FerryClient,
  id: string,
  percent: number | null,
  out: (line: string) => void,
): Promise<void> {
  const workflowId = workflowIdOf(id);
  const answer = await client.setThrottle(workflowId, percent);
  out(
    answer.pinned
      ? `${workflowId}: throttle pinned at ${answer.throttlePercent}% until \`ferry throttle ${id} policy\``
      : `${workflowId}: throttle back to the policy, now ${answer.throttlePercent}%`,
  );
}

/** The `<ms>` of `ferry downtime-limit`, through the update's schema (the workflow's validator checks it again). */
export function downtimeLimitFromArg(value: string): number {
  try {
    return validateDowntimeLimitInput({ downtimeLimitMs: numberOrText(value) });
  } catch (err) {
    throw usageError((err as Error).message);
  }
}

/** `ferry downtime-limit <migration|vm> <ms>`: changes the running migration's downtime limit. */
export async function downtimeLimitCommand(
  client: FerryClient,
  id: string,
  ms: number,
  out: (line: string) => void,
): Promise<void> {
  const workflowId = workflowIdOf(id);
  const answer = await client.setDowntimeLimit(workflowId, ms);
  out(`${workflowId}: downtime limit ${answer.downtimeLimitMs} ms from the next round's end`);
}

/** `ferry cancel <migration|vm> [--reason text]`. */
export async function cancelCommand(
  client: FerryClient,
  id: string,
  flags: { reason: string },
  out: (line: string) => void,
): Promise<void> {
  const workflowId = await client.findRunningMigration(id);
  await client.cancel(workflowId, flags.reason);
  out(`cancel requested for ${workflowId}; the source VM keeps running`);
}
