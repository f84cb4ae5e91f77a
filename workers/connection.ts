/** Connects a worker process to the Temporal service named by the environment. */
import { NativeConnection } from '@temporalio/worker';
import { ferryEnvironment } from '../temporal-config';

/** Opens a worker connection, retrying for `timeoutMs` while the server starts. */
export async function connectWorker(timeoutMs = 30_000): Promise<NativeConnection> {
  const { temporalAddress } = ferryEnvironment();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await NativeConnection.connect({ address: temporalAddress });
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`cannot reach the Temporal service at ${temporalAddress}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Reads `--name value` from argv. */
export function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
