/**
 * Fills guest memory with self-checking, incompressible pages at VM creation, split over threads:
 * the cost is the page content generator and the kernel's first touch of every page, both of
 * which scale with cores (1 GiB takes about 1 s on one core of the reference machine, 0.55 s on two).
 */
import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { GuestMemory } from './guest-memory';
import type { MemoryFillWorkerData } from './memory-fill-worker';

/** Largest number of threads a fill uses by default (the reference machine has 2 cores). */
export const DEFAULT_FILL_THREADS = 2;

/** What to write: pages [0, pageCount) at `generation`, content seeded by `seed`. */
export interface FillPagesOptions {
  /** Pages to write, from page 0; default all of memory. */
  pageCount?: number;
  /** Generation written into every page; default 1. */
  generation?: number;
  /** Content seed; default 0. */
  seed?: number;
  /** Threads to use, the calling one included; default min(DEFAULT_FILL_THREADS, cores). */
  threads?: number;
}

/**
 * Writes pages [0, pageCount) with `writePage`, which marks them dirty (clear the bitmap after if
 * that is not wanted). Resolves when every page is written. Throws RangeError for a pageCount
 * beyond the memory; rejects with the worker's error if a fill thread fails.
 */
export async function fillPages(memory: GuestMemory, opts: FillPagesOptions = {}): Promise<void> {
  const pageCount = opts.pageCount ?? memory.pageCount;
  const generation = opts.generation ?? 1;
  const seed = opts.seed ?? 0;
  if (!Number.isInteger(pageCount) || pageCount < 0 || pageCount > memory.pageCount) {
    throw new RangeError(`pageCount must be an integer in [0, ${memory.pageCount}], got ${pageCount}`);
  }
  const threads = Math.max(1, Math.min(opts.threads ?? DEFAULT_FILL_THREADS, availableParallelism()));
  // Below a few thousand pages a thread costs more to start than it saves.
  const helpers = pageCount < 4096 ? 0 : threads - 1;
  const share = Math.ceil(pageCount / (helpers + 1));
  const done: Promise<void>[] = [];
  for (let h = 1; h <= helpers; h += 1) {
    const data: MemoryFillWorkerData = {
      shared: memory.shared(),
      fromPage: Math.min(pageCount, h * share),
      toPage: Math.min(pageCount, (h + 1) * share),
      generation,
      seed,
    };
    done.push(runFillWorker(data));
  }
  for (let index = 0; index < Math.min(pageCount, share); index += 1) memory.writePage(index, generation, seed);
  await Promise.all(done);
}

function runFillWorker(data: MemoryFillWorkerData): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(path.join(__dirname, 'memory-fill-worker.js'), { workerData: data });
    let finished = false;
    worker.once('message', () => {
      finished = true;
      resolve();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (!finished) reject(new Error(`memory fill thread exited with code ${code} before finishing`));
    });
  });
}
