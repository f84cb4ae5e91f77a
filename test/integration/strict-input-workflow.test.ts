/**
 * Strict input at the workflow boundary, on the time-skipping test server: a misspelt policy key
 * fails `migrateVm` at once as InvalidInput naming the key's path and the key meant, before any
 * host is asked; the two updates refuse an unknown key in their validator, so nothing changes;
 * the VM admin workflows refuse a `../` id before the host's activity runs.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { CONTROL_TASK_QUEUE } from '../../temporal-config';
import { destroyVm, migrateVm, progressQuery } from '../../workflows';
import { cancelSignal, setDowntimeLimitUpdate, setThrottleUpdate } from '../../workflows/migrate-vm';
import type { MigrationOptions } from '../../workflows/policy';
import { simulateHosts, type HotSetGuest } from './support/throttle-sim';
import { failureOf, gate, useTimeSkipping, withWorkers, type FakeHost } from './support/time-skipping';

jest.setTimeout(120_000);

/** Dirties its hot set faster than pages leave, so the migration stays in pre-copy until cancelled. */
const HOT: HotSetGuest = { memoryPages: 16_384, hotSetPages: 8_192, sendPagesPerSec: 10_000, writePagesPerSec: 20_000 };

function calledActivities(host: FakeHost): string[] {
  return Object.entries(host)
    .filter(([, fn]) => (fn as jest.Mock).mock.calls.length > 0)
    .map(([name]) => name);
}

describe('strict input at the workflow boundary', () => {
  const ts = useTimeSkipping();
  let nextId = 0;

  function start(name: string, policy: unknown): Promise<WorkflowHandle<typeof migrateVm>> {
    nextId += 1;
    return ts.env.client.workflow.start(migrateVm, {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId: `strict-${name}-${nextId}-${Date.now()}`,
      args: [{ vmId: 'vm-7', sourceHost: 'h1', destinationHost: 'h2', policy: policy as MigrationOptions }],
    });
  }

  /** The message an update failed with, or `accepted: <answer>`. */
  function outcome(update: Promise<unknown>): Promise<string> {
    return update.then(
      (value) => `accepted: ${JSON.stringify(value)}`,
      (error: Error & { cause?: Error }) => `${error.name}: ${error.cause?.message ?? error.message}`,
    );
  }

  it('fails a migration whose policy misspells a key at once, as InvalidInput naming the path and the key meant', async () => {
    const hosts = simulateHosts(HOT);

    const error = await withWorkers(ts, hosts, async () => failureOf(await start('misspelt', { downtimeLimit: 5 })));

    expect(error.cause).toMatchObject({ name: 'ApplicationFailure', type: 'InvalidInput', nonRetryable: true });
    expect(error.cause?.message).toBe('policy.downtimeLimit is not an option; did you mean policy.downtimeLimitMs?');
    expect(calledActivities(hosts.h1)).toEqual([]);
    expect(calledActivities(hosts.h2)).toEqual([]);
  });

  it('refuses setDowntimeLimit and setThrottle with an unknown key in their validators, and takes the right keys', async () => {
    const second = gate();
    const hosts = simulateHosts(HOT, { beforeRound: (round) => (round === 2 ? second.pass() : Promise.resolve()) });

    const seen = await withWorkers(ts, hosts, async () => {
      try {
        const handle = await start('updates', { throttle: 'none', maxRounds: 1_000 });
        await second.reached;
        const misspeltLimit = await outcome(
          handle.executeUpdate(setDowntimeLimitUpdate, { args: [{ downtimeLimit: 500 } as never] }),
        );
        const extraLimitKey = await outcome(
          handle.executeUpdate(setDowntimeLimitUpdate, { args: [{ downtimeLimitMs: 500, now: true } as never] }),
        );
        const extraThrottleKey = await outcome(
          handle.executeUpdate(setThrottleUpdate, { args: [{ percent: 10, pinned: true } as never] }),
        );
        const progress = await handle.query(progressQuery);
        const accepted = await outcome(
          handle.executeUpdate(setDowntimeLimitUpdate, { args: [{ downtimeLimitMs: 500 }] }),
        );
        await handle.signal(cancelSignal, { reason: 'test ends' });
        second.open();
        const end = await failureOf(handle);
        return { misspeltLimit, extraLimitKey, extraThrottleKey, progress, accepted, end };
      } finally {
        second.open();
      }
    });

    expect(seen.misspeltLimit).toBe(
      'WorkflowUpdateFailedError: downtimeLimit is not an option; did you mean downtimeLimitMs?; ' +
        'downtimeLimitMs must be a positive integer, got undefined',
    );
    expect(seen.extraLimitKey).toBe('WorkflowUpdateFailedError: now is not an option; the options are downtimeLimitMs');
    expect(seen.extraThrottleKey).toBe('WorkflowUpdateFailedError: pinned is not an option; the options are percent');
    // Nothing changed before the good update.
    expect(seen.progress).toMatchObject({ downtimeLimitMs: 300, throttlePercent: 0 });
    expect(hosts.h1.setSourceThrottle).not.toHaveBeenCalled();
    expect(seen.accepted).toBe('accepted: {"downtimeLimitMs":500}');
    expect(seen.end.cause).toMatchObject({ type: 'MigrationCancelled' });
  });

  it('refuses a ../ VM id in destroyVm before the host is asked', async () => {
    const hosts = simulateHosts(HOT);

    const error = await withWorkers(ts, hosts, async () =>
      failureOf(
        await ts.env.client.workflow.start(destroyVm, {
          taskQueue: CONTROL_TASK_QUEUE,
          workflowId: `strict-destroy-${Date.now()}`,
          args: [{ hostId: 'h1', vmId: '../../etc/passwd' }],
        }),
      ),
    );

    expect(error.cause).toMatchObject({ type: 'InvalidInput', nonRetryable: true });
    expect(error.cause?.message).toBe(
      'vmId must be 1-64 letters, digits, _ or -, starting with a letter or digit, got "../../etc/passwd"',
    );
    expect(hosts.h1.destroyVm).not.toHaveBeenCalled();
  });
});
