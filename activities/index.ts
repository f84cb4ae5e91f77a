/** The host agent's activities. */
export { createActivities } from './host-activities';
export { FAILURE_TYPES, type HostDeps } from './host-context';
export type {
  CreateVmInput,
  HostActivities,
  LeaseActivities,
  MigrationRefInput,
  PrepareDestinationInput,
  PrepareSourceInput,
  PrepareSourceResult,
  ReceivePagesInput,
  ReleaseSourceInput,
  RenewLeaseInput,
  SendRoundInput,
  StepReport,
  SwitchoverInput,
  VmSummary,
} from './types';
