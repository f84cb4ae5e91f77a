/**
 * The activity proxies of one host: every activity runs on the task queue of the host it touches,
 * with a timeout and retry preset chosen by how long the activity may take.
 */
import { proxyActivities, type RetryPolicy } from '@temporalio/workflow';
import type { HostActivities, LeaseActivities } from '../activities/types';
import { hostTaskQueue, TIMEOUTS } from '../temporal-config/presets';
import { DEFAULT_RESUME_TIMEOUT_MS } from './policy';

/** One host's activities, by the preset they run under. */
export interface HostActivityProxies {
  /** Quick steps (prepare, finish, release, roll back); retried up to 20 times. */
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
}

/** The proxies for the activities of host `hostId`; call from workflow code only. */
export function hostActivities(hostId: string): HostActivityProxies {
  const retry: RetryPolicy = {
    initialInterval: '500ms',
    backoffCoefficient: 2,
    maximumInterval: '5s',
    maximumAttempts: 20,
  };
  const short = proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.shortActivityMs,
    retry,
  });
  const long = proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.roundActivityMs,
    heartbeatTimeout: TIMEOUTS.heartbeatMs,
    retry,
  });
  const switchover = proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.shortActivityMs + DEFAULT_RESUME_TIMEOUT_MS,
    heartbeatTimeout: TIMEOUTS.heartbeatMs,
    retry: { maximumAttempts: 3, initialInterval: '200ms' },
  });
  const record = proxyActivities<HostActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.shortActivityMs,
    retry: { ...retry, maximumAttempts: 3 },
  });
  const lease = proxyActivities<LeaseActivities>({
    taskQueue: hostTaskQueue(hostId),
    startToCloseTimeout: TIMEOUTS.shortActivityMs,
    retry: { ...retry, maximumAttempts: 3 },
  });
  return { short, long, switchover, record, lease };
}
