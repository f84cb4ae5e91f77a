/**
 * ferry's ground floor: the shapes every layer shares (the one id pattern, the inputs of the
 * workflows and their updates as zod schemas, the page size, workloads and vCPU figures of a guest,
 * the wire protocol between host agent, engine and VMMs) and the parser that refuses a bad input
 * whole. It imports nothing from the project, so anything may import it.
 */
export { shown } from './checks';
export { InvalidInputError } from './errors';
export { ID_PATTERN, ID_RULE, MAX_ID_CHARS, idSchema, isValidId, validateId, type IdKind } from './ids';
export {
  GIVE_UP_ACTIONS,
  MAX_BATCH_PAGES,
  MAX_CREDIT_WINDOW,
  MAX_ROUNDS_LIMIT,
  MAX_THROTTLE_PERCENT,
  THROTTLE_POLICIES,
  migrateVmInputSchema,
  migrationOptionsSchema,
  setDowntimeLimitInputSchema,
  setThrottleInputSchema,
  throttlePercentSchema,
  type GiveUpAction,
  type MigrateVmInput,
  type MigrationOptions,
  type SetDowntimeLimitInput,
  type SetThrottleInput,
  type ThrottlePolicy,
} from './migration-input';
export { PAGE_SIZE_BYTES, type VcpuStats, type Workload } from './guest';
export { parseInput } from './parse-input';
export type * from './protocol';
export { closestName } from './suggest';
export {
  destroyVmInputSchema,
  dumpVmMemoryInputSchema,
  listVmsInputSchema,
  provisionVmInputSchema,
  type DestroyVmInput,
  type DumpVmMemoryInput,
  type ListVmsInput,
  type ProvisionVmInput,
} from './vm-admin-input';
