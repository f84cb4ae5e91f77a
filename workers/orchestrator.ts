/**
 * Orchestrator: the Temporal worker that runs ferry's workflows on the control task queue. It
 * holds no state of its own; killing and restarting it lets Temporal replay the workflows.
 *
 * Usage: node dist/workers/orchestrator.js
 */
import { Worker } from '@temporalio/worker';
import { CONTROL_TASK_QUEUE, NAMESPACE } from '../temporal-config';
import { connectWorker } from './connection';

async function main(): Promise<void> {
  const connection = await connectWorker();
  const worker = await Worker.create({
    connection,
    namespace: NAMESPACE,
    taskQueue: CONTROL_TASK_QUEUE,
    workflowsPath: require.resolve('../workflows'),
  });
  console.log(`orchestrator serving ${CONTROL_TASK_QUEUE} (pid ${process.pid})`);
  await worker.run();
  await connection.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
