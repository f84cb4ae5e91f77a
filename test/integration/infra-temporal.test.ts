import { Client, Connection } from '@temporalio/client';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { NAMESPACE, SEARCH_ATTRIBUTES } from '../../temporal-config';
import type { TestTemporal } from '../../harness';
import { startTestTemporal, timeSkippingEnvironmentOptions } from '../../harness';
import { startTemporalDevServer, stopTemporalDevServer } from '../../infra';

jest.setTimeout(60_000);

/** temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD (@temporalio/proto is not a direct dependency). */
const INDEXED_VALUE_TYPE_KEYWORD = 2;

describe('Temporal dev server service', () => {
  let server: TestTemporal;
  let connection: Connection | undefined;

  beforeAll(async () => {
    server = await startTestTemporal();
  });

  afterEach(async () => {
    await connection?.close();
    connection = undefined;
  });

  afterAll(async () => {
    await server.stop();
  });

  it('serves the default namespace with ferry search attributes registered as keywords', async () => {
    connection = await Connection.connect({ address: server.address });
    const described = await connection.workflowService.describeNamespace({ namespace: NAMESPACE });
    expect(described.namespaceInfo?.name).toBe(NAMESPACE);
    const listed = await connection.operatorService.listSearchAttributes({ namespace: NAMESPACE });
    for (const name of Object.keys(SEARCH_ATTRIBUTES)) {
      expect(listed.customAttributes[name]).toBe(INDEXED_VALUE_TYPE_KEYWORD);
    }
  });

  it('reports already running on a second start', async () => {
    const { stateDir, port } = server;
    const again = await startTemporalDevServer({ stateDir, port, uiPort: 0, headless: true });
    expect(again.state).toBe('already-running');
    expect(again.address).toBe(server.address);
  });

  it('keeps a running workflow across a stop and start, because the database is on disk', async () => {
    connection = await Connection.connect({ address: server.address });
    const workflowId = `infra-restart-${Date.now()}`;
    const client = new Client({ connection });
    await client.workflow.start('migrateVm', { taskQueue: 'infra-test-nobody', workflowId, args: [] });
    await connection.close();
    expect((await stopTemporalDevServer({ stateDir: server.stateDir })).state).toBe('stopped');
    await server.restart();
    connection = await Connection.connect({ address: server.address });
    const description = await new Client({ connection }).workflow.getHandle(workflowId).describe();
    expect(description.status.name).toBe('RUNNING');
  });
});

describe('time-skipping test server', () => {
  it('starts from the pinned binary through an existing-path executable', async () => {
    const env = await TestWorkflowEnvironment.createTimeSkipping(timeSkippingEnvironmentOptions());
    try {
      expect(env.supportsTimeSkipping).toBe(true);
      const before = await env.currentTimeMs();
      await env.sleep('1 day');
      expect((await env.currentTimeMs()) - before).toBeGreaterThanOrEqual(86_400_000);
    } finally {
      await env.teardown();
    }
  });
});
