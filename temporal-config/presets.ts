/**
 * Everything ferry's processes agree on: the Temporal namespace, task queue names, search
 * attributes, timeout presets and default ports. Pure constants: workflows import this file.
 */

/** Namespace registered on the dev server by `ferry up` (and `infra` in tests). */
export const NAMESPACE = 'default';

/** Task queue of the orchestrator worker, which runs the workflows. */
export const CONTROL_TASK_QUEUE = 'ferry-control';

/** Task queue of the host agent on `hostId`: activities that touch a host run there. */
export function hostTaskQueue(hostId: string): string {
  return `ferry-host-${hostId}`;
}

/** Host ids of the embedded default (two hosts on this machine). */
export const DEFAULT_HOSTS: readonly string[] = ['h1', 'h2'];

/** Search attributes kept current by `migrateVm`; registered on the server at start. */
export const SEARCH_ATTRIBUTES = {
  VmId: 'Keyword',
  SourceHost: 'Keyword',
  DestinationHost: 'Keyword',
  MigrationPhase: 'Keyword',
} as const;

/** Default ports of the embedded services; each can be overridden by an environment variable. */
export const DEFAULT_TEMPORAL_PORT = 7233;
export const DEFAULT_TEMPORAL_UI_PORT = 8233;
export const DEFAULT_NATS_PORT = 4222;

/** Largest NATS message accepted by the embedded nats-server (bytes); batches stay well below. */
export const NATS_MAX_PAYLOAD_BYTES = 8 * 1024 * 1024;

/**
 * Activity timeout presets. Heartbeat timeouts are short so that a dead host agent is noticed
 * within seconds; long activities heartbeat every second.
 */
export const TIMEOUTS = {
  /** Short control activities (reserve, stun, release): seconds. */
  shortActivityMs: 30_000,
  /** A pre-copy round; it heartbeats, so a dead agent is noticed after `heartbeatMs`. */
  roundActivityMs: 30 * 60_000,
  /** Heartbeat timeout of long activities. */
  heartbeatMs: 10_000,
  /**
   * Heartbeat timeout of short control activities (the host agent heartbeats them every
   * `heartbeatIntervalMs`): a step whose agent was killed is retried this long after its last
   * heartbeat, instead of after `shortActivityMs`.
   */
  controlHeartbeatMs: 5_000,
  /**
   * How long the first task to a host (a `ping`) may wait for its host agent: past it, the host
   * is unknown or down and the migration fails as HostUnavailable before touching anything.
   */
  hostReachMs: 10_000,
  /**
   * How long any later attempt of a host activity may wait for its host agent to pick it up: a
   * host that vanished mid-migration fails its step after this, instead of holding it forever.
   */
  hostLostMs: 60_000,
  /**
   * Bound of each rollback step and of each cleanup step after the resume, retries included: what
   * a vanished host leaves undone is reported as an incident instead of holding the migration.
   */
  cleanupStepMs: 60_000,
  /** Interval at which long activities heartbeat. */
  heartbeatIntervalMs: 1_000,
} as const;

/**
 * How long the engine's state for a migration (outgoing entry and claim, throttle, incoming
 * reservation, NATS connections, timers) lives in a VMM without its workflow renewing it (ms).
 * The workflow renews it through the activities it runs (every heartbeat of a round or of the
 * receiver); when a workflow is terminated or fails, the VMMs release everything once it lapses.
 * Longer than a host agent's restart plus an activity retry. FERRY_LEASE_TTL_MS overrides it.
 */
export const DEFAULT_MIGRATION_LEASE_TTL_MS = 30_000;
