/**
 * The guest's write workload: which pages its vCPU dirties and how fast. Page choice is a pure,
 * seeded function, so the same seed gives the same sequence of pages.
 */
import { VmmParamsError } from './errors';
import { PAGE_SIZE_BYTES } from './guest-memory';
import type { Workload } from '../model/guest';

export type { Workload } from '../model/guest';

/** Workload of a VM that was given none. */
export const DEFAULT_WORKLOAD: Workload = { type: 'idle' };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function positiveNumber(raw: Record<string, unknown>, key: string, option: string): number {
  const value = raw[key];
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new VmmParamsError(
      `${option}.${key}`,
      `${option}.${key} must be a positive number, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/**
 * Validates a workload given as untrusted data (JSON from a request or the command line) and
 * returns a new, clean object. `option` names it in messages (default "workload"). Throws
 * VmmParamsError: "workload.rateBytesPerSec must be a positive number, got -1".
 */
export function resolveWorkload(raw: unknown, option = 'workload'): Workload {
  if (!isRecord(raw)) {
    throw new VmmParamsError(option, `${option} must be an object with a type, got ${JSON.stringify(raw)}`);
  }
  switch (raw['type']) {
    case 'idle':
      return { type: 'idle' };
    case 'random':
    case 'sweep':
      return { type: raw['type'], rateBytesPerSec: positiveNumber(raw, 'rateBytesPerSec', option) };
    case 'hotset':
      return {
        type: 'hotset',
        rateBytesPerSec: positiveNumber(raw, 'rateBytesPerSec', option),
        hotSetBytes: positiveNumber(raw, 'hotSetBytes', option),
      };
    default:
      throw new VmmParamsError(
        `${option}.type`,
        `${option}.type must be one of idle, random, hotset, sweep, got ${JSON.stringify(raw['type'])}`,
      );
  }
}

/** Rate of page writes of a workload while the vCPU runs (pages per millisecond). */
export function workloadPagesPerMs(workload: Workload): number {
  return workload.type === 'idle' ? 0 : workload.rateBytesPerSec / PAGE_SIZE_BYTES / 1000;
}

/** Number of pages a hotset workload writes to: the first ⌊hotSetBytes/4096⌋, at least 1. */
export function hotSetPages(hotSetBytes: number, pageCount: number): number {
  return Math.max(1, Math.min(pageCount, Math.floor(hotSetBytes / PAGE_SIZE_BYTES)));
}

/** A seeded xorshift32 generator of unsigned 32-bit integers; seed 0 is replaced by a constant. */
export function createXorshift32(seed: number): () => number {
  let s = seed | 0 || 0x2545f491;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/**
 * Returns a function giving the next page the workload writes, reproducible for a given
 * (workload, pageCount, seed). An idle workload's chooser returns -1 (no page).
 */
export function createPageChooser(workload: Workload, pageCount: number, seed: number): () => number {
  const next = createXorshift32(seed);
  switch (workload.type) {
    case 'idle':
      return () => -1;
    case 'random':
      return () => next() % pageCount;
    case 'hotset': {
      const hot = hotSetPages(workload.hotSetBytes, pageCount);
      return () => next() % hot;
    }
    case 'sweep': {
      let cursor = -1;
      return () => {
        cursor = (cursor + 1) % pageCount;
        return cursor;
      };
    }
  }
}
