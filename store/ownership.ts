/**
 * The VM's ownership record on the shared store: one file per epoch under
 * `<store>/owners/<vmId>/`, created with O_EXCL, so moving ownership from epoch e to e+1 is a
 * compare-and-swap: of all hosts that try to create epoch e+1, exactly one succeeds. The current
 * owner is the record with the highest epoch. The destination resumes only after it has created
 * epoch e+1; a source that rolls back first creates epoch e+1 for itself, which fences the
 * destination out.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';

/** One epoch of a VM's ownership. */
export interface OwnershipRecord {
  vmId: string;
  epoch: number;
  hostId: string;
  migrationId: string;
  /** ISO time the record was written. */
  at: string;
}

function ownersDir(storeDir: string, vmId: string): string {
  return path.join(storeDir, 'owners', vmId);
}

function epochFile(storeDir: string, vmId: string, epoch: number): string {
  return path.join(ownersDir(storeDir, vmId), `${String(epoch).padStart(10, '0')}.json`);
}

/** The record with the highest epoch, or undefined if the VM has never been registered. */
export async function readOwner(storeDir: string, vmId: string): Promise<OwnershipRecord | undefined> {
  let names: string[];
  try {
    names = await fs.readdir(ownersDir(storeDir, vmId));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const latest = names
    .filter((n) => /^\d{10}\.json$/.test(n))
    .sort()
    .pop();
  if (latest === undefined) return undefined;
  return JSON.parse(await fs.readFile(path.join(ownersDir(storeDir, vmId), latest), 'utf8')) as OwnershipRecord;
}

/**
 * Creates epoch `epoch` for `hostId` if nobody has; returns the winning record either way, so the
 * caller compares `hostId` to learn whether it won. Idempotent for the same host and migration.
 */
export async function claimOwnership(
  storeDir: string,
  claim: Omit<OwnershipRecord, 'at'>,
): Promise<{ won: boolean; record: OwnershipRecord }> {
  await fs.mkdir(ownersDir(storeDir, claim.vmId), { recursive: true });
  const file = epochFile(storeDir, claim.vmId, claim.epoch);
  const record: OwnershipRecord = { ...claim, at: new Date().toISOString() };
  // Written aside, then hard-linked into place: link() fails with EEXIST if the epoch exists, so
  // the record appears atomically and complete, and only one claimant can create it.
  const tmp = `${file}.${claim.hostId}.${process.pid}.${randomUUID()}.tmp`;
  const handle = await fs.open(tmp, 'w');
  await handle.writeFile(JSON.stringify(record));
  await handle.datasync();
  await handle.close();
  try {
    await fs.link(tmp, file);
    const dir = await fs.open(ownersDir(storeDir, claim.vmId), 'r');
    await dir.sync();
    await dir.close();
    return { won: true, record };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const existing = JSON.parse(await fs.readFile(file, 'utf8')) as OwnershipRecord;
    const won = existing.hostId === claim.hostId && existing.migrationId === claim.migrationId;
    return { won, record: existing };
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/** Forgets the VM's ownership records if `hostId` holds the latest epoch (its VM is gone). */
export async function releaseOwnership(storeDir: string, vmId: string, hostId: string): Promise<boolean> {
  const owner = await readOwner(storeDir, vmId);
  if (!owner || owner.hostId !== hostId) return false;
  await fs.rm(ownersDir(storeDir, vmId), { recursive: true, force: true });
  return true;
}
