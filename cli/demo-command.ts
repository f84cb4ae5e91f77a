/**
 * `ferry demo`: ferry's main job in one go on the embedded default. It brings the services and two
 * host agents up, starts a VM on h1 with a hot-set workload, migrates it to h2 with a live progress
 * view, then compares the stunned source's memory with the destination's page by page, removes
 * the source and prints the result (`--json`: one JSON object as the last line, naming the store).
 * `--store s3` runs it on the embedded SeaweedFS store instead of the store directory.
 * `--driver qemu` migrates a Linux guest in QEMU instead of the simulated one (QEMU is installed
 * and the guest image built on first use); its check compares the stunned source's RAM with the
 * destination's RAM at resume byte for byte.
 */
import * as path from 'node:path';
import { ferryEnvironment } from '../temporal-config';
import { clusterUp } from '../infra/ferry-cluster';
import { embeddedStoreEnvironment, type EmbeddedStore } from '../infra/cluster-store';
import { compareMigratedMemory } from '../verification';
import { parseSize } from '../vmm/size';
import type { DemoFlags, PolicyFlags } from './args';
import { CliError, EXIT, usageError } from './errors';
import { FerryClient } from './ferry-client';
import { policyFromFlags, runMigration } from './migrate-commands';
import { resultSummary } from './progress-view';
import { driverFromFlag, workloadFromFlags } from './vm-commands';
import { runQemuSetup } from '../infra/qemu';

/** Guest of the demo unless `--memory` says otherwise. */
export const DEMO_MEMORY = '256MiB';

/**
 * The store `--store` of `ferry up` and `ferry demo` chooses: `s3` (the embedded SeaweedFS) or
 * `dir`/`directory` (the store directory); undefined without the flag. Throws a usage error for any
 * other value.
 */
export function embeddedStoreFromFlag(value: string | undefined): EmbeddedStore | undefined {
  if (value === undefined) return undefined;
  if (value === 's3') return 's3';
  if (value === 'dir' || value === 'directory') return 'directory';
  throw usageError(
    `--store must be s3 (the embedded SeaweedFS) or dir (the store directory), got ${JSON.stringify(value)}; ` +
      'to migrate on another store, run `ferry up` and `ferry migrate --store <dir|s3://bucket/prefix>`',
  );
}

/** Runs the demo; see the header comment. */
export async function demoCommand(
  flags: DemoFlags,
  out: (line: string) => void,
  log: (line: string) => void,
): Promise<void> {
  const store = embeddedStoreFromFlag(flags.store);
  const env = embeddedStoreEnvironment(ferryEnvironment(), store);
  const json = flags.json === true;
  const vmId = flags.vm ?? `demo-${Date.now().toString(36)}`;
  const memoryBytes = parseSize(flags.memory ?? DEMO_MEMORY);
  // The demo's --store picks the cluster's store, which the hosts use by default: not a policy's.
  const policyFlags: PolicyFlags = { ...flags };
  delete policyFlags.store;
  const policy = { ...policyFromFlags(policyFlags), keepSourceAfterSwitchover: true };
  for (const line of await clusterUp(env, ['h1', 'h2'], store === undefined ? {} : { store })) log(line);
  const client = await FerryClient.connect();
  try {
    const workload =
      flags.workload !== undefined
        ? workloadFromFlags(flags)
        : { type: 'hotset' as const, rateBytesPerSec: 20e6, hotSetBytes: Math.min(16 * 2 ** 20, memoryBytes) };
    const driver = driverFromFlag(flags.driver);
    if (driver === 'qemu') {
      log('installing QEMU if needed (infra/qemu/setup-qemu.sh)');
      await runQemuSetup();
    }
    const vm = await client.createVm('h1', {
      vmId,
      memoryBytes,
      workload,
      seed: 42,
      ...(driver !== 'simulated' ? { driver } : {}),
    });
    log(`VM ${vm.vmId} running on h1 (${driver}, ${memoryBytes} bytes, workload ${workload.type}, pid ${vm.pid})`);
    const result = await runMigration(
      client,
      { vmId, sourceHost: 'h1', destinationHost: 'h2', policy },
      { showProgress: !json, stream: process.stderr },
    );

    const comparison = await compareMigratedMemory(client, {
      vmId,
      sourceHost: 'h1',
      destinationHost: 'h2',
      dir: path.join(env.stateDir, 'dumps'),
      driver,
    });
    await client.destroyVm('h1', vmId);
    const pageCheck = {
      ok: comparison.ok && comparison.sourceState !== 'running',
      pages: comparison.pages,
      identical: comparison.identical,
      rewrittenAfterResume: comparison.rewrittenAfterResume,
      mismatched: comparison.mismatched.length,
      sourceStateAfterSwitchover: comparison.sourceState,
    };
    if (json) {
      out(JSON.stringify({ ...result, pageCheck, store: result.store ?? env.store }));
    } else {
      out(resultSummary(result));
      out(
        `  page-by-page check: ${pageCheck.ok ? 'ok' : 'FAILED'}: ${comparison.identical} identical, ${comparison.rewrittenAfterResume} rewritten by the guest after resume, ` +
          `${comparison.mismatched.length} mismatched; source vCPU was ${comparison.sourceState} until removed`,
      );
      out(
        `VM ${vmId} now runs on h2. Watch it in the Web UI at http://127.0.0.1:${env.temporalUiPort}; stop everything with \`npx ferry down\`.`,
      );
    }
    if (!pageCheck.ok)
      throw new CliError(`page-by-page check failed: ${comparison.details.join('; ')}`, EXIT.migrationFailed);
  } finally {
    await client.close();
  }
}
