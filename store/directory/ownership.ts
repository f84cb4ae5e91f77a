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
import type { OwnershipRecord } from '../page-store';
import { makePrivateDir, pathUnder, PRIVATE_FILE_MODE } from '../safe-path';
import { syncDir } from '../durable-file';
import { untilAnswered, type AnswerOptions } from '../store-answer';

export type { OwnershipRecord } from '../page-store';

const EPOCH_FILE = /^\d{10}\.json$/;

function ownersDir(storeDir: string, vmId: string): string {
  return pathUnder(path.join(storeDir, 'owners'), vmId, 'vmId');
}

function epochFile(storeDir: string, vmId: string, epoch: number): string {
  return path.join(ownersDir(storeDir, vmId), `${String(epoch).padStart(10, '0')}.json`);
}

/** The record in `file`, or undefined if there is none. */
async function readRecord(file: string): Promise<OwnershipRecord | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as OwnershipRecord;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

const sameClaim = (a: OwnershipRecord, b: OwnershipRecord): boolean =>
  a.hostId === b.hostId && a.migrationId === b.migrationId;

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
    .filter((n) => EPOCH_FILE.test(n))
    .sort()
    .pop();
  if (latest === undefined) return undefined;
  return JSON.parse(await fs.readFile(path.join(ownersDir(storeDir, vmId), latest), 'utf8')) as OwnershipRecord;
}

/** A claim written aside and made durable in advance; `commitClaim` links it into place. */
export interface PreparedClaim {
  storeDir: string;
  record: OwnershipRecord;
  tmpPath: string;
}

/**
 * Writes the record of a future claim aside (mode 0600) and fdatasyncs it, so that committing it
 * later costs only a link and a directory fsync (the destination prepares its claim before the
 * switchover).
 */
export async function prepareClaim(storeDir: string, claim: Omit<OwnershipRecord, 'at'>): Promise<PreparedClaim> {
  await makePrivateDir(ownersDir(storeDir, claim.vmId));
  const record: OwnershipRecord = { ...claim, at: new Date().toISOString() };
  const tmpPath = `${epochFile(storeDir, claim.vmId, claim.epoch)}.${claim.hostId}.${process.pid}.${randomUUID()}.tmp`;
  const handle = await fs.open(tmpPath, 'wx', PRIVATE_FILE_MODE);
  try {
    await handle.chmod(PRIVATE_FILE_MODE);
    await handle.writeFile(JSON.stringify(record));
    await handle.datasync();
  } finally {
    await handle.close();
  }
  return { storeDir, record, tmpPath };
}

/**
 * Creates the prepared epoch if nobody has; returns the winning record either way, so the caller
 * learns whether it won. link() fails with EEXIST if the epoch exists, so the record appears
 * atomically and complete, and only one claimant can create it. Idempotent for the same host and
 * migration. The prepared file is removed.
 *
 * A failure that leaves the outcome open (the link's answer or the folder's fsync failed: the
 * record may have landed) is never taken for a loss: the epoch's record is read back, and linked
 * again while it is absent, until the store answers (store-answer.ts); a record that landed counts
 * as taken. Throws StoreUndecidedError if the store does not answer within `options.limitMs`.
 */
export async function commitClaim(
  prepared: PreparedClaim,
  options: AnswerOptions = {},
): Promise<{ won: boolean; record: OwnershipRecord }> {
  const { storeDir, record, tmpPath } = prepared;
  const file = epochFile(storeDir, record.vmId, record.epoch);
  const attempt = async (): Promise<{ won: boolean; record: OwnershipRecord }> => {
    try {
      await fs.link(tmpPath, file);
      await syncDir(path.dirname(file));
      return { won: true, record };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const existing = await readRecord(file);
    // Gone again: the owner released the VM between our link and our read.
    if (existing === undefined) throw new Error(`ownership record ${file} vanished as it was read`);
    return { won: sameClaim(existing, record), record: existing };
  };
  try {
    try {
      return await attempt();
    } catch {
      return await untilAnswered(
        `whether the claim on ownership epoch ${record.epoch} of VM ${record.vmId} by host ${record.hostId} landed`,
        async () => {
          const landed = await readRecord(file);
          if (landed !== undefined) return { won: sameClaim(landed, record), record: landed };
          return attempt();
        },
        options,
      );
    }
  } finally {
    await fs.rm(tmpPath, { force: true });
  }
}

/** Discards a prepared claim that will not be committed. */
export async function discardClaim(prepared: PreparedClaim): Promise<void> {
  await fs.rm(prepared.tmpPath, { force: true });
}

/**
 * Creates epoch `epoch` for `hostId` if nobody has (prepare and commit in one go); see commitClaim.
 */
export async function claimOwnership(
  storeDir: string,
  claim: Omit<OwnershipRecord, 'at'>,
  options: AnswerOptions = {},
): Promise<{ won: boolean; record: OwnershipRecord }> {
  return commitClaim(await prepareClaim(storeDir, claim), options);
}

/**
 * Forgets the VM's ownership records if `hostId` holds the latest epoch (its VM is gone); returns
 * whether it did. Compare-and-delete: only the epochs up to the one read are removed, each by its
 * name, the owner's last and only while it is still the record read, so an epoch another host
 * created meanwhile survives and a reader never sees an older owner come back. The folder stays
 * (a claim may be preparing in it).
 */
export async function releaseOwnership(storeDir: string, vmId: string, hostId: string): Promise<boolean> {
  const owner = await readOwner(storeDir, vmId);
  if (!owner || owner.hostId !== hostId) return false;
  const dir = ownersDir(storeDir, vmId);
  const older = (await fs.readdir(dir)).filter((n) => EPOCH_FILE.test(n) && Number(n.slice(0, 10)) < owner.epoch);
  for (const name of older) await fs.rm(path.join(dir, name), { force: true });
  const file = epochFile(storeDir, vmId, owner.epoch);
  const current = await readRecord(file);
  if (current === undefined) return true;
  if (!sameClaim(current, owner) || current.at !== owner.at) return false;
  await fs.rm(file, { force: true });
  await syncDir(dir);
  return true;
}
