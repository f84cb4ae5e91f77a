/**
 * Host agent: the Temporal worker of one host. It serves the host's task queue with the activities
 * that drive its VMMs. VMMs are separate, detached processes: stopping or killing the agent leaves
 * the guests running, and a restarted agent finds them again from their records.
 *
 * Usage: node dist/workers/host-agent.js --host h1
 */
import * as path from 'node:path';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { SimulatedDriver } from '../vmm';
import { ferryEnvironment, hostTaskQueue, NAMESPACE } from '../temporal-config';
import { argValue, connectWorker, hostNatsConfig } from './connection';

async function main(): Promise<void> {
  const hostId = argValue('--host') ?? process.env['FERRY_HOST_ID'];
  if (!hostId) throw new Error('host-agent needs --host <id>');
  const env = ferryEnvironment();
  const connection = await connectWorker();
  const worker = await Worker.create({
    connection,
    namespace: NAMESPACE,
    taskQueue: hostTaskQueue(hostId),
    activities: createActivities({
      hostId,
      driver: new SimulatedDriver({ hostId, stateDir: env.stateDir }),
      nats: hostNatsConfig(env, hostId),
      defaultStore: env.store,
      storeRoots: env.storeRoots,
      dumpsDir: path.join(env.stateDir, 'dumps'),
      clusterSecretFile: env.clusterSecretFile,
    }),
    maxConcurrentActivityTaskExecutions: 16,
  });
  console.log(`host agent ${hostId} serving ${hostTaskQueue(hostId)} (pid ${process.pid})`);
  await worker.run();
  await connection.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
