/**
 * Checks the input of `migrateVm` before anything is touched: a bad input fails the workflow at
 * once with a non-retryable `InvalidInput` failure that names the field and the value.
 */
import { ApplicationFailure } from '@temporalio/workflow';
import { resolveMigrationOptions, type ResolvedMigrationOptions } from './policy';
import type { MigrateVmInput } from './types';

const HOST_ID = /^[A-Za-z0-9_-]{1,64}$/;
const VM_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Validates `input` and resolves its policy. Throws a non-retryable `ApplicationFailure` of type
 * `InvalidInput` if an id is malformed, both hosts are the same, or the policy is invalid.
 */
export function validateMigrateVmInput(input: MigrateVmInput): ResolvedMigrationOptions {
  const bad = (message: string) => ApplicationFailure.nonRetryable(message, 'InvalidInput');
  if (typeof input !== 'object' || input === null)
    throw bad('migrateVm input must be an object with vmId, sourceHost, destinationHost');
  if (typeof input.vmId !== 'string' || !VM_ID.test(input.vmId))
    throw bad(`vmId must be 1-64 letters, digits, _ or -, got ${JSON.stringify(input.vmId)}`);
  for (const key of ['sourceHost', 'destinationHost'] as const) {
    if (typeof input[key] !== 'string' || !HOST_ID.test(input[key]))
      throw bad(`${key} must be a host id, got ${JSON.stringify(input[key])}`);
  }
  if (input.sourceHost === input.destinationHost)
    throw bad(`sourceHost and destinationHost are both ${input.sourceHost}: nothing to migrate`);
  try {
    return resolveMigrationOptions(input.policy);
  } catch (err) {
    throw bad(err instanceof Error ? err.message : String(err));
  }
}
