/**
 * A QEMU guest on the S3 store (SeaweedFS): the store's uploads copy pages from the source's shadow
 * when their chunk's turn comes, with the version the shadow's version word gives (a real guest's
 * page has no header to say it). With nats-server killed mid pre-copy and not restarted, the
 * migration can only finish from what the uploads put in the bucket: the stunned source's RAM and
 * the destination's RAM at resume are then equal byte for byte, and the guest program carries on
 * intact. Skips only where QEMU cannot be installed.
 */
import { pagesFlowing, runningCopies, useCluster, vmmCall } from './support/cluster-fixture';
import {
  expectGuestCarriesOn,
  expectRamEqual,
  MiB,
  QEMU_BUDGET_SEC_PER_GIB,
  qemuTestOrSkip,
  untilStatus,
} from './support/qemu-cluster';

jest.setTimeout(240_000);

const qemuTest = qemuTestOrSkip('the QEMU test on the S3 store');

const fx = useCluster({ store: 's3' });

qemuTest(
  'nats-server killed mid pre-copy and not restarted: a QEMU guest migrates through the S3 store, byte for byte',
  async () => {
    const vmId = 'qemu-on-s3';
    await fx.ferry.createVm('h1', {
      vmId,
      memoryBytes: 128 * MiB,
      workload: { type: 'hotset', rateBytesPerSec: 20e6, hotSetBytes: 16 * MiB },
      driver: 'qemu',
    });
    await untilStatus(fx, 'h1', vmId, 'a heartbeat', (s) => (s.guest?.seq ?? -1) >= 1);
    const workflowId = await fx.ferry.startMigration({
      vmId,
      sourceHost: 'h1',
      destinationHost: 'h2',
      policy: { keepSourceAfterSwitchover: true, completionBudgetSecPerGiB: QEMU_BUDGET_SEC_PER_GIB },
    });
    let result;
    try {
      await pagesFlowing(fx.cluster, vmId, workflowId);
      fx.cluster.nats.kill('SIGKILL');
      result = await fx.ferry.result(workflowId);
    } finally {
      await fx.cluster.nats.restart();
    }
    console.log(
      `QEMU guest on S3, NATS killed: ${result.rounds.length} rounds, ${result.totalMs.toFixed(0)} ms, ` +
        `downtime ${result.downtimeMs.toFixed(1)} ms, ${result.bytesViaStore} bytes read from the bucket`,
    );
    expect(result).toMatchObject({ outcome: 'completed', runningOn: 'h2', verified: true });
    expect(result.store).toMatch(/^s3:\/\//);
    expect(result.bytesViaStore).toBeGreaterThan(0);
    expect(result.destinationDigest).toBe(result.sourceDigest);
    expect(await expectRamEqual(fx, vmId, 'h1', 'h2')).toMatchObject({ identical: 128 * 256, pages: 128 * 256 });
    await expectGuestCarriesOn(fx, vmId, 'h1', 'h2');
    expect(await runningCopies(fx, vmId)).toEqual(['h2']);
    expect(await vmmCall(fx.cluster, 'h2', vmId, 'verify')).toMatchObject({ badPages: 0 });
    await fx.ferry.destroyVm('h1', vmId);
    await fx.ferry.destroyVm('h2', vmId);
  },
);
