/**
 * What the CLI (and any SDK user) does with Temporal: reach the service, check that a host agent
 * serves a host, start and follow migrations, and manage VMs through the small admin workflows.
 */
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowUpdateFailedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
} from '@temporalio/client';
import {
  ApplicationFailure,
  WorkflowIdConflictPolicy,
  defaultPayloadConverter,
  type Payload,
} from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { CONTROL_TASK_QUEUE, ferryEnvironment, hostTaskQueue, NAMESPACE } from '../temporal-config';
import type { CreateVmInput, VmSummary } from '../activities/types';
import type { MigrateVmInput, MigrationProgress, MigrationResult } from '../workflows/types';
import { isValidId } from '../model';
import { CliError, EXIT } from './errors';

/** Workflow id of the migration of `vmId`: one id per VM, so Temporal refuses a second one. */
export function migrationWorkflowId(vmId: string): string {
  return `migrate-${vmId}`;
}

/** A connected Temporal client for ferry's namespace. */
export class FerryClient {
  private constructor(
    readonly client: Client,
    private readonly connection: Connection,
  ) {}

  /**
   * Connects to `address` (default: the configured Temporal service); CliError (exit 5) if it
   * does not answer.
   */
  static async connect(address?: string): Promise<FerryClient> {
    const temporalAddress = address ?? ferryEnvironment().temporalAddress;
    try {
      const connection = await Connection.connect({ address: temporalAddress, connectTimeout: 3_000 });
      return new FerryClient(new Client({ connection, namespace: NAMESPACE }), connection);
    } catch (err) {
      throw new CliError(`cannot reach Temporal at ${temporalAddress}: run \`ferry up\` first`, EXIT.servicesDown, {
        cause: err,
      });
    }
  }

  /** Whether a host agent currently polls `hostId`'s task queue. */
  async hostIsServed(hostId: string): Promise<boolean> {
    const response = await this.connection.workflowService.describeTaskQueue({
      namespace: NAMESPACE,
      taskQueue: { name: hostTaskQueue(hostId) },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    });
    return (response.pollers ?? []).length > 0;
  }

  /** Throws CliError (exit 3) unless a host agent serves `hostId`. */
  async requireHost(hostId: string): Promise<void> {
    if (!(await this.hostIsServed(hostId))) {
      throw new CliError(
        `unknown host ${hostId}: no host agent serves task queue ${hostTaskQueue(hostId)} (is it up? \`ferry up\`)`,
        EXIT.notFound,
      );
    }
  }

  /** Runs one admin workflow to completion and returns its result, mapping failures to CliError. */
  private async admin<T>(workflow: string, args: unknown, id: string): Promise<T> {
    try {
      return (await this.client.workflow.execute(workflow, {
        taskQueue: CONTROL_TASK_QUEUE,
        workflowId: id,
        args: [args],
      })) as T;
    } catch (err) {
      throw toCliError(err);
    }
  }

  /** Starts a VM on `hostId`. */
  createVm(hostId: string, spec: CreateVmInput): Promise<VmSummary> {
    return this.admin('provisionVm', { hostId, ...spec }, `provision-${spec.vmId}-${Date.now()}`);
  }

  /** Lists the VMs of `hostIds`. */
  listVms(hostIds: string[]): Promise<{ hostId: string; vms: VmSummary[] }[]> {
    return this.admin('listVms', { hostIds }, `list-vms-${Date.now()}`);
  }

  /** Destroys a VM on `hostId`. */
  destroyVm(hostId: string, vmId: string): Promise<void> {
    return this.admin('destroyVm', { hostId, vmId }, `destroy-${vmId}-${Date.now()}`);
  }

  /** Writes the memory of `vmId` on `hostId` to `path` (a path that host can write). */
  dumpVmMemory(
    hostId: string,
    vmId: string,
    path: string,
    at?: 'now' | 'resume',
  ): Promise<{ state: string; pagesWritten: number }> {
    return this.admin(
      'dumpVmMemory',
      { hostId, vmId, path, ...(at !== undefined ? { at } : {}) },
      `dump-${vmId}-${hostId}-${Date.now()}`,
    );
  }

  /** Finds the host that runs `vmId`, or throws CliError (exit 3). */
  async locateVm(vmId: string, hostIds: string[]): Promise<{ hostId: string; vm: VmSummary }> {
    for (const { hostId, vms } of await this.listVms(hostIds)) {
      const vm = vms.find((v) => v.vmId === vmId && v.mode === 'run');
      if (vm) return { hostId, vm };
    }
    throw new CliError(`unknown VM ${vmId}: no host among ${hostIds.join(', ')} runs it`, EXIT.notFound);
  }

  /** Starts `migrateVm`; CliError (exit 6) if the VM is already migrating. */
  async startMigration(input: MigrateVmInput): Promise<string> {
    const workflowId = migrationWorkflowId(input.vmId);
    try {
      await this.client.workflow.start('migrateVm', {
        taskQueue: CONTROL_TASK_QUEUE,
        workflowId,
        args: [input],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
        searchAttributes: {
          VmId: [input.vmId],
          SourceHost: [input.sourceHost],
          DestinationHost: [input.destinationHost],
          MigrationPhase: ['prepare'],
        },
      });
      return workflowId;
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new CliError(
          `VM ${input.vmId} is already migrating (workflow ${workflowId}); wait for it or \`ferry cancel ${workflowId}\``,
          EXIT.conflict,
        );
      }
      throw err;
    }
  }

  /**
   * The workflow id of the running migration named by `id`: `migrate-<vm>` if it runs, else `id`
   * itself if it names a running migration, else the migration of VM `id` started under any other
   * workflow id (by the temporal CLI or an SDK client), found by its VmId search attribute.
   * CliError (exit 3) if none runs.
   */
  async findRunningMigration(id: string): Promise<string> {
    const vmId = id.startsWith('migrate-') ? id.slice('migrate-'.length) : id;
    for (const candidate of [migrationWorkflowId(vmId), id]) {
      const description = await this.client.workflow
        .getHandle(candidate)
        .describe()
        .catch((err: unknown) => {
          if (err instanceof WorkflowNotFoundError) return undefined;
          throw toCliError(err);
        });
      if (description?.status.name === 'RUNNING' && description.type === 'migrateVm') return candidate;
    }
    // Interpolated into a visibility query: only a well-formed VM id is looked up.
    if (isValidId(vmId)) {
      const query = `WorkflowType='migrateVm' AND VmId='${vmId}' AND ExecutionStatus='Running'`;
      for await (const execution of this.client.workflow.list({ query })) return execution.workflowId;
    }
    throw new CliError(
      `no running migration of ${id}: \`ferry status ${id}\` shows how the last one ended`,
      EXIT.notFound,
    );
  }

  /** The progress query of migration `workflowId`. */
  async progress(workflowId: string): Promise<MigrationProgress> {
    try {
      return await this.client.workflow.getHandle(workflowId).query<MigrationProgress>('progress');
    } catch (err) {
      throw toCliError(err);
    }
  }

  /**
   * Progress inside the round under way, from the heartbeat of the pending `sendRound` activity
   * (the same details the Web UI shows), or undefined between rounds.
   */
  async roundHeartbeat(workflowId: string): Promise<{ round: number; pagesSent: number } | undefined> {
    const description = await this.client.workflow.getHandle(workflowId).describe();
    const pending = (description.raw.pendingActivities ?? []).find((a) => a.activityType?.name === 'sendRound');
    const payload = pending?.heartbeatDetails?.payloads?.[0];
    if (!payload) return undefined;
    const details = defaultPayloadConverter.fromPayload<{ round?: number; pagesSent?: number }>(payload as Payload);
    return typeof details?.round === 'number' && typeof details.pagesSent === 'number'
      ? { round: details.round, pagesSent: details.pagesSent }
      : undefined;
  }

  /** Waits for the migration's end: its result, or CliError (exit 4) carrying the partial result. */
  async result(workflowId: string): Promise<MigrationResult> {
    try {
      return (await this.client.workflow.getHandle(workflowId).result()) as MigrationResult;
    } catch (err) {
      throw toCliError(err);
    }
  }

  /** Sends the cancel signal. */
  async cancel(workflowId: string, reason: string): Promise<void> {
    try {
      await this.client.workflow.getHandle(workflowId).signal('cancel', { reason });
    } catch (err) {
      throw toCliError(err);
    }
  }

  /**
   * Pins the throttle of running migration `workflowId` at `percent` (0..99), or hands it back to
   * its policy (null); CliError (exit 2) with the workflow's reason when it refuses.
   */
  setThrottle(workflowId: string, percent: number | null): Promise<{ throttlePercent: number; pinned: boolean }> {
    return this.update(workflowId, 'setThrottle', { percent });
  }

  /** Changes the downtime limit of running migration `workflowId`; CliError (exit 2) if refused. */
  setDowntimeLimit(workflowId: string, downtimeLimitMs: number): Promise<{ downtimeLimitMs: number }> {
    return this.update(workflowId, 'setDowntimeLimit', { downtimeLimitMs });
  }

  private async update<T>(workflowId: string, name: string, arg: unknown): Promise<T> {
    try {
      return await this.client.workflow.getHandle(workflowId).executeUpdate<T, [unknown]>(name, { args: [arg] });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        const cause = err.cause instanceof Error ? err.cause.message : err.message;
        throw new CliError(`migration ${workflowId} refused ${name}: ${cause}`, EXIT.usage);
      }
      throw toCliError(err);
    }
  }

  /** Status of a migration: running (with progress) or ended (with result). */
  async status(
    workflowId: string,
  ): Promise<{ status: string; progress?: MigrationProgress; result?: MigrationResult }> {
    try {
      const handle = this.client.workflow.getHandle(workflowId);
      const description = await handle.describe();
      const status = description.status.name;
      if (status === 'RUNNING') return { status, progress: await handle.query<MigrationProgress>('progress') };
      const result = await this.result(workflowId).catch((err: unknown) =>
        err instanceof MigrationFailedCliError ? err.result : undefined,
      );
      return { status, ...(result ? { result } : {}) };
    } catch (err) {
      throw toCliError(err);
    }
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await this.connection.close();
  }
}

/** A migration that ended without completing; `result` holds what it did. */
export class MigrationFailedCliError extends CliError {
  constructor(
    message: string,
    readonly result: MigrationResult | undefined,
    exitCode: number = EXIT.migrationFailed,
  ) {
    super(message, exitCode);
  }
}

const NOT_FOUND_TYPES = new Set(['VmNotFound']);
const USAGE_TYPES = new Set(['InvalidInput', 'StoreUnavailable', 'VmExists', 'NotOwner']);

/** Maps Temporal failures to CliErrors with the innermost, most specific message. */
export function toCliError(err: unknown): unknown {
  if (err instanceof WorkflowNotFoundError)
    return new CliError(`no such migration or workflow: ${err.workflowId ?? ''}`, EXIT.notFound);
  if (!(err instanceof WorkflowFailedError)) return err;
  let cause: unknown = err.cause;
  let innermost: ApplicationFailure | undefined;
  while (cause instanceof Error) {
    if (cause instanceof ApplicationFailure) innermost = cause;
    cause = (cause as { cause?: unknown }).cause;
  }
  const top = err.cause instanceof ApplicationFailure ? err.cause : undefined;
  const result = top?.details?.[0] as MigrationResult | undefined;
  const specific = innermost ?? top;
  const message = specific?.message ?? err.message;
  const typedExit =
    specific?.type && NOT_FOUND_TYPES.has(specific.type)
      ? EXIT.notFound
      : specific?.type && USAGE_TYPES.has(specific.type)
        ? EXIT.usage
        : undefined;
  // A migration that ended keeps its result whatever the exit code, so `--json` can still print it.
  if (result && typeof result === 'object' && 'outcome' in result) {
    return typedExit === undefined
      ? new MigrationFailedCliError(top?.message ?? message, result)
      : new MigrationFailedCliError(message, result, typedExit);
  }
  if (typedExit !== undefined) return new CliError(message, typedExit);
  return new CliError(message, EXIT.migrationFailed);
}
