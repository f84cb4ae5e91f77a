/**
 * Raw NATS publish → server → subscribe throughput between two processes, with the same message
 * size as ferry's batches: the limit the page stream is compared against. The subscriber grants
 * credit every `window/2` messages as ferry's receiver does, so neither measurement loses messages
 * to the slow-consumer limit.
 *
 * Publisher and subscriber connect as hosts h1 and h2 with the credentials in `credentialsDir`
 * (`''`: anonymously) on a migration's pages and credit subjects, as ferry's source and destination do.
 *
 * As a child process: `node raw-nats.js sub <url> <credentialsDir> <migrationId> <count> <window>` or
 * `node raw-nats.js pub <url> <credentialsDir> <migrationId> <count> <bytes> <window>`.
 */
import { fork } from 'node:child_process';
import * as path from 'node:path';
import type { NatsConnection } from 'nats';
import { connectNats } from '../data-plane/nats-client';
import { migrationSubjects } from '../data-plane/subjects';

const RAW_SOURCE = 'h1';
const RAW_DESTINATION = 'h2';

function connectHost(url: string, credentialsDir: string, hostId: string): Promise<NatsConnection> {
  const credentials = credentialsDir === '' ? {} : { credentialsFile: path.join(credentialsDir, `${hostId}.json`) };
  return connectNats({ url, ...credentials }, hostId, `raw-nats-${hostId}`);
}

/** Result of one raw measurement. */
export interface RawNatsResult {
  messageBytes: number;
  messages: number;
  received: number;
  bytesPerSec: number;
}

async function subscriber(url: string, dir: string, migrationId: string, count: number, window: number): Promise<void> {
  const nc = await connectHost(url, dir, RAW_DESTINATION);
  const { pages: subject, credit } = migrationSubjects(RAW_SOURCE, RAW_DESTINATION, migrationId);
  let received = 0;
  let bytes = 0;
  let first = 0;
  await new Promise<void>((resolve) => {
    nc.subscribe(subject, {
      callback: (_err, msg) => {
        if (received === 0) first = performance.now();
        received += 1;
        bytes += msg.data.length;
        if (received % (window / 2) === 0) nc.publish(credit, Buffer.from(String(received + window)));
        if (received === count) resolve();
      },
    });
  });
  const seconds = (performance.now() - first) / 1000;
  process.send?.({ received, bytes, bytesPerSec: bytes / seconds });
  await nc.drain();
}

async function publisher(
  url: string,
  dir: string,
  migrationId: string,
  count: number,
  size: number,
  window: number,
): Promise<void> {
  const nc = await connectHost(url, dir, RAW_SOURCE);
  const { pages: subject, credit } = migrationSubjects(RAW_SOURCE, RAW_DESTINATION, migrationId);
  // The first window is granted up front, as ferry's receiver grants it on subscribing.
  let granted = window;
  let wake: (() => void) | undefined;
  nc.subscribe(credit, {
    callback: (_err, msg) => {
      granted = Math.max(granted, Number(Buffer.from(msg.data).toString()));
      wake?.();
    },
  });
  const payload = Buffer.alloc(size, 0x5a);
  for (let i = 0; i < count; i += 1) {
    while (granted <= i) await new Promise<void>((r) => (wake = r));
    nc.publish(subject, payload);
  }
  await nc.flush();
  process.send?.({ done: true });
  await nc.drain();
}

/**
 * Measures raw throughput with `count` messages of `messageBytes` through the server at `url`, as
 * hosts h1 and h2 with their credentials in `credentialsDir` (undefined: anonymously).
 */
export async function measureRawNats(
  url: string,
  credentialsDir: string | undefined,
  messageBytes: number,
  count: number,
  window: number,
): Promise<RawNatsResult> {
  const migrationId = `raw-${Date.now()}`;
  const dir = credentialsDir ?? '';
  const sub = fork(__filename, ['sub', url, dir, migrationId, String(count), String(window)]);
  // Listeners go on at once: a child's exit may be handled before the continuation of an await.
  const subExited = new Promise<number | null>((r) => sub.once('exit', r));
  const subResult = new Promise<{ received: number; bytesPerSec: number }>((resolve, reject) => {
    sub.once('message', (m) => resolve(m as never));
    void subExited.then((code) => reject(new Error(`raw NATS subscriber exited (${code}) without a result`)));
  });
  await new Promise((r) => setTimeout(r, 300));
  const pub = fork(__filename, ['pub', url, dir, migrationId, String(count), String(messageBytes), String(window)]);
  const pubExited = new Promise<number | null>((r) => pub.once('exit', r));
  const result = await subResult;
  await Promise.all([subExited, pubExited]);
  return { messageBytes, messages: count, received: result.received, bytesPerSec: result.bytesPerSec };
}

if (require.main === module) {
  const [role, url = '', dir = '', migrationId = '', count = '0', a = '0', b = '0'] = process.argv.slice(2);
  const run =
    role === 'sub'
      ? subscriber(url, dir, migrationId, Number(count), Number(a))
      : publisher(url, dir, migrationId, Number(count), Number(a), Number(b));
  run.catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
