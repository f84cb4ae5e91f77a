/**
 * What a VM's last completed migration learned about it, kept on the shared store beside its
 * ownership record, so that the next migration of the VM finds it whichever host it starts from,
 * and after any restart: on a directory store the file `<dir>/history/<vmId>.json` (written aside,
 * fdatasync'ed and renamed), on S3 the object `history/<vmId>.json` under the store's prefix.
 *
 * The `history` throttle policy starts its first round at `throttlePercent`; every completed
 * migration that converged rewrites the record, whatever its policy.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { writeFileDurably } from './durable-file';
import { pathUnder } from './safe-path';
import type { ObjectStore } from './object/object-store';

/** The record of one VM. */
export interface VmHistoryRecord {
  vmId: string;
  /** The migration that wrote it. */
  migrationId: string;
  /** ISO time it was written. */
  at: string;
  sourceHost: string;
  destinationHost: string;
  /** Throttle policy that migration ran under. */
  policy: string;
  /** Throttle the vCPU ran under in the last pre-copy round, the one that converged (percent). */
  throttlePercent: number;
  /** Highest throttle of that migration (percent). */
  maxThrottlePercent: number;
  rounds: number;
  /** The last round's figures, for whoever reads the record. */
  sendRateBytesPerSec: number;
  dirtyRateBytesPerSec: number;
}

const FIELDS: readonly (keyof VmHistoryRecord)[] = [
  'vmId',
  'migrationId',
  'at',
  'sourceHost',
  'destinationHost',
  'policy',
  'throttlePercent',
  'maxThrottlePercent',
  'rounds',
  'sendRateBytesPerSec',
  'dirtyRateBytesPerSec',
];

/** Key of the record of `vmId` (relative to the store's root or prefix). */
export function historyKey(vmId: string): string {
  return `history/${vmId}.json`;
}

/** Parses a stored record; undefined for text that is not one (a record from an older format). */
export function parseVmHistory(text: string, vmId: string): VmHistoryRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  if (record['vmId'] !== vmId || FIELDS.some((field) => record[field] === undefined)) return undefined;
  const percent = record['throttlePercent'];
  if (typeof percent !== 'number' || !(percent >= 0 && percent <= 99)) return undefined;
  return Object.fromEntries(FIELDS.map((field) => [field, record[field]])) as unknown as VmHistoryRecord;
}

/** File of the record of `vmId` in directory store `dir`; throws PathEscapeError for an id that climbs out. */
function historyFile(dir: string, vmId: string): string {
  return pathUnder(path.join(dir, 'history'), `${vmId}.json`, 'vmId');
}

/** The record of `vmId` in directory store `dir`, or undefined. */
export async function readDirectoryVmHistory(dir: string, vmId: string): Promise<VmHistoryRecord | undefined> {
  try {
    return parseVmHistory(await fs.readFile(historyFile(dir, vmId), 'utf8'), vmId);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Durably replaces the record of `record.vmId` in directory store `dir`. */
export function writeDirectoryVmHistory(dir: string, record: VmHistoryRecord): Promise<void> {
  return writeFileDurably(historyFile(dir, record.vmId), `${JSON.stringify(record)}\n`);
}

/** The record of `vmId` in an object store, or undefined. */
export async function readObjectVmHistory(objects: ObjectStore, vmId: string): Promise<VmHistoryRecord | undefined> {
  const stored = await objects.get(historyKey(vmId));
  return stored && parseVmHistory(stored.body.toString('utf8'), vmId);
}

/** Replaces the record of `record.vmId` in an object store (one PUT: the old record or the new). */
export async function writeObjectVmHistory(objects: ObjectStore, record: VmHistoryRecord): Promise<void> {
  await objects.put(historyKey(record.vmId), Buffer.from(`${JSON.stringify(record)}\n`));
}
