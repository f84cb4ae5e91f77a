/**
 * Checks the input of `migrateVm` before anything is touched, against the shared schema of
 * model/migration-input.ts: a bad input fails the workflow at once with a non-retryable
 * `InvalidInput` failure that names every problem with its full path
 * ("policy.downtimeLimit is not an option; did you mean policy.downtimeLimitMs?").
 */
import { ApplicationFailure } from '@temporalio/workflow';
import { migrateVmInputSchema, parseInput } from '../model';
import { resolveMigrationOptions, type ResolvedMigrationOptions } from './policy';
import type { MigrateVmInput } from './types';

/**
 * Validates `input` and resolves its policy. Throws a non-retryable `ApplicationFailure` of type
 * `InvalidInput` if a key is unknown, an id is malformed, both hosts are the same, or the policy is
 * invalid.
 */
export function validateMigrateVmInput(input: MigrateVmInput): ResolvedMigrationOptions {
  try {
    const valid = parseInput(migrateVmInputSchema, input, 'migrateVm input');
    return resolveMigrationOptions(valid.policy, 'policy');
  } catch (err) {
    throw ApplicationFailure.nonRetryable(err instanceof Error ? err.message : String(err), 'InvalidInput');
  }
}
