/** The host agent's activities. */
export { createActivities, FAILURE_TYPES, type HostDeps } from './host-activities';
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
  SwitchoverInput,
  VmSummary,
} from './types';
