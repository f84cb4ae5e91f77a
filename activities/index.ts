/** The host agent's activities. */
export { createActivities } from './host-activities';
export { FAILURE_TYPES, type HostDeps } from './host-context';
export type {
  CreateVmInput,
  HostActivities,
  MigrationRefInput,
  PrepareDestinationInput,
  PrepareSourceInput,
  PrepareSourceResult,
  ReceivePagesInput,
  ReleaseSourceInput,
  SendRoundInput,
  StepReport,
  SwitchoverInput,
  VmSummary,
} from './types';
