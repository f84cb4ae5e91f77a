import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { claimOwnership, readOwner } from '../../store/directory/ownership';

describe('VM ownership record', () => {
  let storeDir: string;

  beforeEach(() => {
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-ownership-'));
  });

  afterEach(() => {
    fs.rmSync(storeDir, { recursive: true, force: true });
  });

  it('has no owner for a VM that was never registered', async () => {
    expect(await readOwner(storeDir, 'vm-unknown')).toBeUndefined();
  });

  it('lets exactly one of two hosts claiming the same epoch at once win, and both see the same winner', async () => {
    for (let epoch = 1; epoch <= 20; epoch += 1) {
      const [a, b] = await Promise.all([
        claimOwnership(storeDir, { vmId: 'vm1', epoch, hostId: 'h1', migrationId: 'm1' }),
        claimOwnership(storeDir, { vmId: 'vm1', epoch, hostId: 'h2', migrationId: 'm1' }),
      ]);
      expect([a.won, b.won].filter(Boolean)).toHaveLength(1);
      expect(a.record).toEqual(b.record);
      expect(a.record.hostId).toBe(a.won ? 'h1' : 'h2');
      expect(await readOwner(storeDir, 'vm1')).toEqual(a.record);
    }
  });

  it('tells the same host and migration claiming again that it won, without changing the record', async () => {
    const first = await claimOwnership(storeDir, { vmId: 'vm1', epoch: 1, hostId: 'h2', migrationId: 'm1' });
    const again = await claimOwnership(storeDir, { vmId: 'vm1', epoch: 1, hostId: 'h2', migrationId: 'm1' });

    expect(first.won).toBe(true);
    expect(again).toEqual({ won: true, record: first.record });
  });

  it('tells every one of several concurrent claims by the same host and migration that it won', async () => {
    // A retried activity may claim while its first attempt, in the same worker process, still runs.
    const problems: string[] = [];
    for (let epoch = 1; epoch <= 400; epoch += 1) {
      const claims = await Promise.allSettled(
        Array.from({ length: 8 }, () =>
          claimOwnership(storeDir, { vmId: 'vm-retry', epoch, hostId: 'h2', migrationId: 'm1' }),
        ),
      );
      for (const claim of claims) {
        if (claim.status === 'rejected') problems.push(`epoch ${epoch}: ${String((claim.reason as Error).message)}`);
        else if (!claim.value.won) problems.push(`epoch ${epoch}: lost to ${JSON.stringify(claim.value.record)}`);
      }
    }
    expect(problems).toEqual([]);
    // 3,200 claims with fsyncs: seconds on a loaded 2-core machine, not a timing assertion.
  }, 60_000);

  it('does not let the same host win an epoch taken for another migration', async () => {
    await claimOwnership(storeDir, { vmId: 'vm1', epoch: 1, hostId: 'h2', migrationId: 'm1' });
    const other = await claimOwnership(storeDir, { vmId: 'vm1', epoch: 1, hostId: 'h2', migrationId: 'm2' });

    expect(other.won).toBe(false);
    expect(other.record.migrationId).toBe('m1');
  });

  it('reads as owner the record with the highest epoch, also past a change in the number of digits', async () => {
    for (const epoch of [1, 2, 9, 10]) {
      await claimOwnership(storeDir, {
        vmId: 'vm1',
        epoch,
        hostId: epoch % 2 === 0 ? 'h2' : 'h1',
        migrationId: `m${epoch}`,
      });
    }
    await claimOwnership(storeDir, { vmId: 'vm-other', epoch: 50, hostId: 'h9', migrationId: 'x' });

    expect(await readOwner(storeDir, 'vm1')).toMatchObject({
      vmId: 'vm1',
      epoch: 10,
      hostId: 'h2',
      migrationId: 'm10',
    });
  });

  it('leaves only epoch records behind, no temporary files', async () => {
    await Promise.all([
      claimOwnership(storeDir, { vmId: 'vm1', epoch: 1, hostId: 'h1', migrationId: 'm1' }),
      claimOwnership(storeDir, { vmId: 'vm1', epoch: 1, hostId: 'h2', migrationId: 'm1' }),
    ]);
    expect(fs.readdirSync(path.join(storeDir, 'owners', 'vm1'))).toEqual(['0000000001.json']);
  });
});
