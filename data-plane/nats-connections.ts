/**
 * The NATS connections of the migration engine in this VMM, counted from connect until the
 * connection has closed, so a leak shows in `migration.describe` (and a test can see there is none).
 */
import { connect, type ConnectionOptions, type NatsConnection } from 'nats';

let open = 0;

/** Connects like `nats.connect` and counts the connection as open until it has closed. */
export async function connectCounted(opts: ConnectionOptions): Promise<NatsConnection> {
  const nc = await connect(opts);
  open += 1;
  void nc.closed().then(() => {
    open -= 1;
  });
  return nc;
}

/** NATS connections of this process opened through `connectCounted` and not yet closed. */
export function openNatsConnections(): number {
  return open;
}
