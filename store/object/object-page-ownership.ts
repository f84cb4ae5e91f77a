/**
 * A VM's ownership records on an object store: one object per epoch, `owners/<vmId>/<epoch>.json`,
 * created only if absent (If-None-Match: *), so of all hosts that try to create epoch e+1 exactly
 * one succeeds, as link(2) does for the directory store. The owner is the record with the highest
 * epoch. A claim needs no preparation: its commit is one conditional PUT.
 *
 * Idempotency: committing the same claim again (a retried activity) finds its own record and wins
 * again; the S3 adapter also settles a conditional PUT whose first attempt landed unseen.
 */
import type { ObjectStore } from './object-store';
import { epochOfOwnerKey, ownerKey, ownersPrefix } from './object-page-layout';
import type { OwnershipRecord } from '../page-store';
import { untilAnswered, type AnswerOptions } from '../store-answer';

/** Times a read retries a record deleted between its listing and its read (a release racing it). */
const READ_ATTEMPTS = 3;

function parseRecord(body: Buffer, key: string): OwnershipRecord {
  try {
    return JSON.parse(body.toString('utf8')) as OwnershipRecord;
  } catch (error) {
    throw new Error(`ownership record ${key} is not valid JSON`, { cause: error });
  }
}

/** Keys of the VM's records, lowest epoch first. */
async function recordKeys(objects: ObjectStore, vmId: string): Promise<{ key: string; epoch: number }[]> {
  const keys = await objects.list(ownersPrefix(vmId));
  return keys.flatMap((key) => {
    const epoch = epochOfOwnerKey(key);
    return epoch === undefined ? [] : [{ key, epoch }];
  });
}

/** The record with the highest epoch, or undefined if the VM has none. Throws the store's errors. */
export async function readObjectOwner(objects: ObjectStore, vmId: string): Promise<OwnershipRecord | undefined> {
  for (let attempt = 1; ; attempt += 1) {
    const latest = (await recordKeys(objects, vmId)).pop();
    if (latest === undefined) return undefined;
    const stored = await objects.get(latest.key);
    if (stored) return parseRecord(stored.body, latest.key);
    if (attempt >= READ_ATTEMPTS) return undefined;
  }
}

/**
 * Creates `record`'s epoch if nobody has; returns the winning record either way: won iff the
 * stored record has the same host and migration. A put whose answer failed (it may have landed) is
 * never taken for a loss: the record is read back, and put again while it is absent, until the
 * store answers (store-answer.ts); a record that landed counts as taken. Throws
 * StoreUndecidedError if the store does not answer within `options.limitMs`.
 */
export async function commitObjectClaim(
  objects: ObjectStore,
  record: OwnershipRecord,
  options: AnswerOptions = {},
): Promise<{ won: boolean; record: OwnershipRecord }> {
  const key = ownerKey(record.vmId, record.epoch);
  const decide = (body: Buffer): { won: boolean; record: OwnershipRecord } => {
    const existing = parseRecord(body, key);
    return { won: existing.hostId === record.hostId && existing.migrationId === record.migrationId, record: existing };
  };
  const attempt = async (): Promise<{ won: boolean; record: OwnershipRecord }> => {
    for (let read = 1; ; read += 1) {
      try {
        await objects.put(key, Buffer.from(JSON.stringify(record)), { ifNoneMatch: '*' });
        return { won: true, record };
      } catch (error) {
        if ((error as Error).name !== 'PreconditionFailedError') throw error;
      }
      const stored = await objects.get(key);
      // Gone again: the owner released the VM between our put and our read; try once more.
      if (stored === undefined && read < READ_ATTEMPTS) continue;
      if (stored === undefined)
        throw new Error(`ownership record ${key} exists and vanishes again each time it is read`);
      return decide(stored.body);
    }
  };
  try {
    return await attempt();
  } catch {
    return untilAnswered(
      `whether the claim on ownership epoch ${record.epoch} of VM ${record.vmId} by host ${record.hostId} landed`,
      async () => {
        const stored = await objects.get(key);
        return stored === undefined ? attempt() : decide(stored.body);
      },
      options,
    );
  }
}

/**
 * Deletes the VM's records if `hostId` holds the latest epoch; returns whether it did. Only epochs
 * up to the one read are deleted, the owner's last, so an epoch created meanwhile by another host
 * survives and a reader never sees an older owner come back.
 */
export async function releaseObjectOwnership(objects: ObjectStore, vmId: string, hostId: string): Promise<boolean> {
  const owner = await readObjectOwner(objects, vmId);
  if (!owner || owner.hostId !== hostId) return false;
  const keys = await recordKeys(objects, vmId);
  for (const { key, epoch } of keys) if (epoch < owner.epoch) await objects.delete(key);
  await objects.delete(ownerKey(vmId, owner.epoch));
  return true;
}
