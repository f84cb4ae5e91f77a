/**
 * Entry point of a worker thread that writes a range of pages for fillPages (memory-fill.ts),
 * then posts 'done'. Any error fails the worker, which fillPages reports.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { GuestMemory } from './guest-memory';
import type { GuestMemoryShared } from './guest-memory';

/** The page range [fromPage, toPage) to write, with the generation and seed of every page. */
export interface MemoryFillWorkerData {
  shared: GuestMemoryShared;
  fromPage: number;
  toPage: number;
  generation: number;
  seed: number;
}

const data = workerData as MemoryFillWorkerData;
const memory = GuestMemory.fromShared(data.shared);
for (let index = data.fromPage; index < data.toPage; index += 1) memory.writePage(index, data.generation, data.seed);
parentPort?.postMessage('done');
