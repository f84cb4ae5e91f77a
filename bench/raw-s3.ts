/**
 * Raw parallel PUT throughput to an S3 server with the S3 page store's object size and parallelism:
 * the limit the store's uploads are compared against. It goes through the store's own adapter
 * (S3ObjectStore with the settings openPageStore gives it, so a CRC32 with every PUT and a checked
 * whole-object GET), into the store's bucket under `bench-raw/`, with random (incompressible)
 * bytes. GETs of the same objects are timed too, for information. Every object is deleted
 * afterwards, and the result says how many were left.
 *
 * Like raw NATS, it runs in a process of its own, so the benchmark's own event loop is not part of
 * it. As a child process: `node raw-s3.js child`, handed its RawS3Request over IPC (the credentials
 * stay off the command line).
 */
import { fork } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { S3ObjectStore } from '../store/object/s3-object-store';

/** Folder in the bucket that holds the measurement's objects while it runs. */
export const RAW_S3_PREFIX = 'bench-raw';

/** The S3 server and bucket to measure against. */
export interface RawS3Target {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
}

/** One measurement: `objects` objects of `objectBytes`, `parallel` requests in flight. */
export interface RawS3Request extends RawS3Target {
  objectBytes: number;
  objects: number;
  parallel: number;
}

/** Result of one raw measurement. */
export interface RawS3Result {
  objectBytes: number;
  objects: number;
  parallel: number;
  putMs: number;
  putBytesPerSec: number;
  /** CPU time (user + system) the measuring process spent on the PUTs: what the uploads cost a VMM. */
  putCpuMs: number;
  getMs: number;
  getBytesPerSec: number;
  getCpuMs: number;
  /** Objects read back with other bytes than were put (0 unless the server corrupts). */
  getMismatches: number;
  /** Objects of this measurement still listed after the deletes (0 unless a delete failed silently). */
  objectsLeft: number;
}

/** Runs `task(0 … count-1)` with at most `parallel` in flight, each worker taking the next index. */
async function inParallel(count: number, parallel: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next;
      next += 1;
      await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
}

/** Deletes every object under `folder`; returns how many are still listed afterwards. */
async function removeFolder(store: S3ObjectStore, folder: string, parallel: number): Promise<number> {
  const keys = await store.list(folder);
  await inParallel(keys.length, parallel, (i) => store.delete(keys[i] as string));
  return (await store.list(folder)).length;
}

function cpuMsSince(start: NodeJS.CpuUsage): number {
  const { user, system } = process.cpuUsage(start);
  return (user + system) / 1000;
}

async function measure(request: RawS3Request): Promise<RawS3Result> {
  const { endpoint, region, bucket, accessKeyId, secretAccessKey, objectBytes, objects, parallel } = request;
  const store = new S3ObjectStore({
    ...{ endpoint, region, bucket, prefix: RAW_S3_PREFIX },
    credentials: { accessKeyId, secretAccessKey },
  });
  const folder = `${process.pid}-${Date.now()}/`;
  const data = randomFillSync(Buffer.allocUnsafe(objectBytes * objects));
  const body = (i: number): Buffer => data.subarray(i * objectBytes, (i + 1) * objectBytes);
  const key = (i: number): string => `${folder}${String(i).padStart(6, '0')}`;
  try {
    // The store's client has its connections open (write probe, header) before pages flow.
    await inParallel(parallel, parallel, async (i) => {
      await store.put(`${folder}warm-up-${i}`, body(i));
    });
    const putStarted = performance.now();
    const putCpu = process.cpuUsage();
    await inParallel(objects, parallel, async (i) => {
      await store.put(key(i), body(i));
    });
    const putCpuMs = cpuMsSince(putCpu);
    const putMs = performance.now() - putStarted;
    let getMismatches = 0;
    const getStarted = performance.now();
    const getCpu = process.cpuUsage();
    await inParallel(objects, parallel, async (i) => {
      const stored = await store.get(key(i));
      if (stored === undefined || !stored.body.equals(body(i))) getMismatches += 1;
    });
    const getCpuMs = cpuMsSince(getCpu);
    const getMs = performance.now() - getStarted;
    const objectsLeft = await removeFolder(store, folder, parallel);
    const bytes = objectBytes * objects;
    const putBytesPerSec = bytes / (putMs / 1000);
    const getBytesPerSec = bytes / (getMs / 1000);
    return {
      ...{ objectBytes, objects, parallel, putMs, putBytesPerSec, putCpuMs },
      ...{ getMs, getBytesPerSec, getCpuMs, getMismatches, objectsLeft },
    };
  } catch (error) {
    await removeFolder(store, folder, parallel).catch(() => undefined);
    throw error;
  } finally {
    store.close();
  }
}

/**
 * Measures raw PUT and GET throughput with `objects` objects of `objectBytes` bytes, `parallel` at
 * once, against `target`, in a child process. Throws if the child fails or exits without a result.
 */
export async function measureRawS3(
  target: RawS3Target,
  objectBytes: number,
  objects: number,
  parallel: number,
): Promise<RawS3Result> {
  const child = fork(__filename, ['child']);
  // Listeners go on at once: a child's exit may be handled before the continuation of an await.
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  const result = new Promise<RawS3Result>((resolve, reject) => {
    child.once('message', (m) => {
      const message = m as { result?: RawS3Result; error?: string };
      if (message.result) resolve(message.result);
      else reject(new Error(`raw S3 measurement against ${target.endpoint} failed: ${message.error}`));
    });
    void exited.then((code) => reject(new Error(`raw S3 child exited (${code}) without a result`)));
  });
  const request: RawS3Request = { ...target, objectBytes, objects, parallel };
  child.send(request);
  try {
    return await result;
  } finally {
    await exited;
  }
}

if (require.main === module && process.argv[2] === 'child') {
  process.once('message', (request) => {
    void measure(request as RawS3Request)
      .then(
        (result) => ({ result }),
        (error: unknown) => ({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
      )
      .then((message) => process.send?.(message, () => process.disconnect()));
  });
}
