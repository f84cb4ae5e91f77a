/**
 * The activity proxies of one host: every activity runs on the task queue of the host it touches,
 * with a timeout and retry preset chosen by how long the activity may take. Every preset bounds how
 * long a step may wait for the host's agent (a schedule-to-start timeout), so a host that is
 * unknown, down or vanished fails the step within a bounded time instead of holding it forever.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  isCancellation,
  proxyActivities,
  TimeoutFailure,
  type RetryPolicy,
} from '@temporalio/workflow';
import type { HostActivities, LeaseActivities } from '../activities/types';
import { hostTaskQueue, TIMEOUTS } from '../temporal-config/presets';
import { DEFAULT_RESUME_TIMEOUT_MS } from './policy';

/** Failure type of a migration whose host did not answer: the message names the host. */
export const HOST_UNAVAILABLE = 'HostUnavailable';

/** One host's activities, by the preset they run under. */
export interface HostActivityProxies {
  /**
   * `ping` only: fails within TIMEOUTS.hostReachMs if no agent serves the host. Called before a
   * migration touches anything.
   */
  reach: Pick<HostActivities, 'ping'>;
  /** Quick steps (prepare, finish, release); heartbeating, retried up to 20 times. */
  short: HostActivities;
  /** Rounds and the receiver: heartbeating, retried up to 20 times. */
  long: HostActivities;
  /**
   * The switchover: long enough to wait for the destination's resume, heartbeating so that a dead
   * source agent is noticed within the heartbeat timeout, retried at most 3 times (a retry rejoins
   * the switchover under way in the VMM).
   */
  switchover: HostActivities;
  /**
   * Steps whose failure the migration outlives (a history record, a throttle asked for by an
   * update): retried 3 times, so that their caller hears of a failure within seconds.
   */
  record: HostActivities;
  /** Lease renewals: quick, retried 3 times; a renewal that fails is only a missed renewal. */
  lease: LeaseActivities;
  /**
   * Rollback steps, and cleanup steps once the guest runs on the destination: each ends, done or
   * failed, within TIMEOUTS.cleanupStepMs, so a host that vanished cannot hold the migration.
   */
  bounded: HostActivities;
}

/** The proxies for the activities of host `hostId`; call from workflow code only. */
export function hostActivities(hostId: string): HostActivityProxies {
  const taskQueue = hostTaskQueue(hostId);
  const retry: RetryPolicy = {
    initialInterval: '500ms',
    backoffCoefficient: 2,
    maximumInterval: '5s',
    maximumAttempts: 20,
  };
  // Each attempt waits at most this long for an agent; a schedule-to-start timeout is never retried.
  const scheduleToStartTimeout = TIMEOUTS.hostLostMs;
  const reach = proxyActivities<HostActivities>({
    taskQueue,
    scheduleToStartTimeout: TIMEOUTS.hostReachMs,
    startToCloseTimeout: TIMEOUTS.controlHeartbeatMs,
    retry: { maximumAttempts: 1 },
  });
  const short = proxyActivities<HostActivities>({
    taskQueue,
    scheduleToStartTimeout,
    startToCloseTimeout: TIMEOUTS.shortActivityMs,
    heartbeatTimeout: TIMEOUTS.controlHeartbeatMs,
    retry,
  });
  const long = proxyActivities<HostActivities>({
    taskQueue,
    scheduleToStartTimeout,
    startToCloseTimeout: TIMEOUTS.roundActivityMs,
    heartbeatTimeout: TIMEOUTS.heartbeatMs,
    retry,
  });
  const switchover = proxyActivities<HostActivities>({
    taskQueue,
    scheduleToStartTimeout,
    startToCloseTimeout: TIMEOUTS.shortActivityMs + DEFAULT_RESUME_TIMEOUT_MS,
    heartbeatTimeout: TIMEOUTS.heartbeatMs,
    retry: { maximumAttempts: 3, initialInterval: '200ms' },
  });
  const record = proxyActivities<HostActivities>({
    taskQueue,
    scheduleToStartTimeout,
    startToCloseTimeout: TIMEOUTS.shortActivityMs,
    heartbeatTimeout: TIMEOUTS.controlHeartbeatMs,
    retry: { ...retry, maximumAttempts: 3 },
  });
  const lease = proxyActivities<LeaseActivities>({
    taskQueue,
    scheduleToStartTimeout,
    startToCloseTimeout: TIMEOUTS.shortActivityMs,
    retry: { ...retry, maximumAttempts: 3 },
  });
  const bounded = proxyActivities<HostActivities>({
    taskQueue,
    scheduleToCloseTimeout: TIMEOUTS.cleanupStepMs,
    startToCloseTimeout: TIMEOUTS.shortActivityMs,
    heartbeatTimeout: TIMEOUTS.controlHeartbeatMs,
    retry,
  });
  return { reach, short, long, switchover, record, bounded, lease };
}

/**
 * Pings every host in `hostIds` at once. Resolves when all answered; rethrows a cancellation;
 * otherwise throws a non-retryable `HostUnavailable` ApplicationFailure naming the hosts that did
 * not answer, and why.
 */
export async function reachHosts(hostIds: readonly string[]): Promise<void> {
  const answers = await Promise.allSettled(hostIds.map((h) => hostActivities(h).reach.ping()));
  // A ping cancelled with the workflow is a cancellation, not an unavailable host.
  for (const answer of answers) if (answer.status === 'rejected' && isCancellation(answer.reason)) throw answer.reason;
  const missing = hostIds.filter((_, i) => answers[i]?.status === 'rejected');
  if (missing.length === 0) return;
  const why = (i: number): unknown => (answers[i] as PromiseRejectedResult).reason;
  const firstFailure = why(hostIds.indexOf(missing[0] as string));
  throw ApplicationFailure.create({
    message: `${missing.map((h) => hostUnavailableReason(h, why(hostIds.indexOf(h)))).join('; ')}; nothing was changed`,
    type: HOST_UNAVAILABLE,
    nonRetryable: true,
    details: [{ hosts: missing }],
    ...(firstFailure instanceof Error ? { cause: firstFailure } : {}),
  });
}

/** Why host `hostId` did not answer a ping, as a sentence naming the host and its task queue. */
function hostUnavailableReason(hostId: string, err: unknown): string {
  if (agentLost(err))
    return (
      `host ${hostId} is unavailable: no host agent picked up a task on ${hostTaskQueue(hostId)} within ` +
      `${TIMEOUTS.hostReachMs / 1000} s (unknown host id, or its agent is down)`
    );
  const message = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
  return `host ${hostId} is unavailable: its host agent did not answer a ping (${message})`;
}

/**
 * Whether `err` is an activity failure because no agent of the host picked the task up in time (a
 * schedule-to-start timeout): the host's agent is gone, and later steps there would wait as long.
 */
export function agentLost(err: unknown): boolean {
  const timeout = err instanceof ActivityFailure ? err.cause : undefined;
  return timeout instanceof TimeoutFailure && timeout.timeoutType === 'SCHEDULE_TO_START';
}
