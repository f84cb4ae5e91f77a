/**
 * A scan worker of a QEMU guest's pages (ram-scan.ts): started with the RAM file's descriptor and
 * the shared shadow and meta, it scans the range each message names and answers with the changed
 * pages (transferred, not copied). Where the main thread maps the file, the worker maps it too
 * (read-only); a worker that cannot fails its first scan with the reason.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadRamMap } from './ram-map';
import { SCAN_CHUNK_BYTES, scanRange, type ScanTarget } from './ram-scan';

/** What the worker is started with. */
export interface ScanWorkerData {
  fd: number;
  shadow: SharedArrayBuffer;
  meta: SharedArrayBuffer;
  /** Bytes of the file to map (the guest's memory), or undefined to read it instead. */
  mapBytes?: number;
}

/** One scan asked of the worker. */
export interface ScanRequest {
  id: number;
  first: number;
  end: number;
  update: boolean;
}

/** The worker's answer: the changed pages, or why it failed. */
export type ScanReply = { id: number; changed: Uint32Array } | { id: number; error: string };

const data = workerData as ScanWorkerData;
const target: ScanTarget = {
  fd: data.fd,
  shadow: Buffer.from(data.shadow),
  meta: new Uint32Array(data.meta),
  scratch: Buffer.allocUnsafeSlow(SCAN_CHUNK_BYTES),
};
const mapping = data.mapBytes === undefined ? undefined : loadRamMap();
if (typeof mapping === 'function' && data.mapBytes !== undefined) target.ram = mapping(data.fd, data.mapBytes, false);

parentPort?.on('message', (request: ScanRequest) => {
  let reply: ScanReply;
  try {
    if (mapping instanceof Error) throw new Error(`cannot map the RAM file: ${mapping.message}`);
    reply = {
      id: request.id,
      changed: Uint32Array.from(scanRange(target, request.first, request.end, request.update)),
    };
  } catch (err) {
    reply = { id: request.id, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort?.postMessage(reply, 'changed' in reply ? [reply.changed.buffer as ArrayBuffer] : []);
});
