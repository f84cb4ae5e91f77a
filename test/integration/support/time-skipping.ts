/**
 * What the time-skipping tests of migrateVm share: the test server with ferry's search attributes
 * and the workflow bundle (once per file), workers for the orchestrator and two simulated hosts,
 * fake host activities as jest.fn, gates that hold a fake activity until the test lets it go, and
 * the failure a workflow ended with.
 */
import { Context } from '@temporalio/activity';
import type { WorkflowFailedError, WorkflowHandle } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  bundleWorkflowCode,
  DefaultLogger,
  Runtime,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import type { HostActivities } from '../../../activities/types';
import { timeSkippingEnvironmentOptions } from '../../../harness';
import { CONTROL_TASK_QUEUE, hostTaskQueue, NAMESPACE, SEARCH_ATTRIBUTES } from '../../../temporal-config';

/** temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD (@temporalio/proto is not imported here). */
const INDEXED_VALUE_TYPE_KEYWORD = 2;
const HEARTBEAT_EVERY_MS = 300;

/** One host's activities, each a jest.fn around a fake. */
export type FakeHost = { [K in keyof HostActivities]: jest.MockedFunction<HostActivities[K]> };

/** The two hosts of a simulated migration. */
export interface FakeHosts {
  h1: FakeHost;
  h2: FakeHost;
}

/** A promise with its resolve function. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

/** A new unresolved Deferred. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** A point where a fake activity waits: `reached` resolves when it gets there, `open()` lets it go on. */
export interface Gate {
  reached: Promise<void>;
  open(): void;
  /** Called by the fake: marks the gate reached and waits until it is opened. */
  pass(): Promise<void>;
}

/** A new closed Gate. */
export function gate(): Gate {
  const reached = deferred<void>();
  const opened = deferred<void>();
  return {
    reached: reached.promise,
    open: () => opened.resolve(),
    pass: async () => {
      reached.resolve();
      await opened.promise;
    },
  };
}

/** Calls `fn` while heartbeating, so a long or held fake activity looks alive to the server. */
export async function heartbeating<T>(fn: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(), HEARTBEAT_EVERY_MS);
  try {
    return await Promise.race([fn(), ctx.cancelled]);
  } finally {
    clearInterval(timer);
  }
}

/** The activities a migration never calls, for fakes that serve only a migration. */
export const NOT_IN_A_MIGRATION: Pick<HostActivities, 'createVm' | 'listVms' | 'destroyVm' | 'dumpVmMemory'> = {
  createVm: async () => {
    throw new Error('createVm is not part of a migration');
  },
  listVms: async () => [],
  destroyVm: async () => undefined,
  dumpVmMemory: async () => {
    throw new Error('dumpVmMemory is not part of a migration');
  },
};

/** Both hosts serving `behaviour`, each method wrapped in its own jest.fn per host; each answers `ping` with its id. */
export function fakeHosts(behaviour: Omit<HostActivities, 'ping'>): FakeHosts {
  const host = (hostId: string): FakeHost => {
    const served: Record<string, (...args: never[]) => unknown> = { ...behaviour, ping: async () => ({ hostId }) };
    return Object.fromEntries(Object.entries(served).map(([name, fn]) => [name, jest.fn(fn)])) as unknown as FakeHost;
  };
  return { h1: host('h1'), h2: host('h2') };
}

/** The test server and the workflow bundle of one test file, filled in by `beforeAll`. */
export interface TimeSkipping {
  env: TestWorkflowEnvironment;
  workflowBundle: WorkflowBundleWithSourceMap;
}

/** Starts the time-skipping server before the file's tests (with ferry's search attributes) and stops it after. */
export function useTimeSkipping(): TimeSkipping {
  const ts = {} as TimeSkipping;
  beforeAll(async () => {
    // Workers log every state change at INFO; warnings (failed workflows and activities) remain.
    Runtime.install({ logger: new DefaultLogger('WARN') });
    [ts.env, ts.workflowBundle] = await Promise.all([
      TestWorkflowEnvironment.createTimeSkipping(timeSkippingEnvironmentOptions()),
      bundleWorkflowCode({ workflowsPath: require.resolve('../../../workflows'), logger: new DefaultLogger('WARN') }),
    ]);
    // migrateVm upserts ferry's search attributes; the dev server registers them at start, the
    // time-skipping server must be told here.
    await ts.env.connection.operatorService.addSearchAttributes({
      namespace: NAMESPACE,
      searchAttributes: Object.fromEntries(
        Object.keys(SEARCH_ATTRIBUTES).map((name) => [name, INDEXED_VALUE_TYPE_KEYWORD]),
      ),
    });
  });
  afterAll(async () => {
    await ts.env?.teardown();
  });
  return ts;
}

/** Runs `fn` while the orchestrator and both hosts (h1, h2) serve their task queues. */
export async function withWorkers<T>(ts: TimeSkipping, hosts: FakeHosts, fn: () => Promise<T>): Promise<T> {
  const connection = ts.env.nativeConnection;
  const [orchestrator, h1, h2] = await Promise.all([
    Worker.create({ connection, taskQueue: CONTROL_TASK_QUEUE, workflowBundle: ts.workflowBundle }),
    Worker.create({ connection, taskQueue: hostTaskQueue('h1'), activities: hosts.h1 }),
    Worker.create({ connection, taskQueue: hostTaskQueue('h2'), activities: hosts.h2 }),
  ]);
  return orchestrator.runUntil(h1.runUntil(h2.runUntil(fn)));
}

/** The failure a workflow ended with (fails the test if it completed). */
export async function failureOf(handle: WorkflowHandle): Promise<WorkflowFailedError> {
  const outcome = await handle.result().then(
    (result: unknown) => ({ result }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome))
    throw new Error(`workflow completed instead of failing: ${JSON.stringify(outcome.result)}`);
  expect(outcome.error).toMatchObject({ name: 'WorkflowFailedError' });
  return outcome.error as WorkflowFailedError;
}
