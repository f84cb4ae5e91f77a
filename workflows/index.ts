/** Workflow entry point bundled by the orchestrator worker. */
export { migrateVm, progressQuery, cancelSignal } from './migrate-vm';
export { provisionVm, listVms, destroyVm, dumpVmMemory } from './vm-admin';
