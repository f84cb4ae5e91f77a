/**
 * A store that fails while a destination is settled, with real processes: a destination VMM in
 * incoming mode (SimulatedDriver), a real nats-server, a directory store, and the host agent's real
 * activities called in process. The store's mailbox is made unreadable on disk: the `control`
 * folder is replaced by a file, so every read of a message fails with ENOTDIR (the tests run as
 * root, for whom a chmod does not make anything unreadable).
 */
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { createActivities } from '../../activities';
import { makeTestStateDir, startTestNats, type TestNats } from '../../infra/test-services';
import { DEFAULT_ANSWER_LIMIT_MS } from '../../store/store-answer';
import { SimulatedDriver } from '../../vmm/driver';
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { VmRecordStore } from '../../vmm/vm-records';

jest.setTimeout(DEFAULT_ANSWER_LIMIT_MS + 60_000);

const MEMORY_BYTES = 256 * PAGE_SIZE_BYTES;
const VM = 'vm-settle';
const MIGRATION = 'm-settle';

let nats: TestNats;
let stateDir: string;
let storeDir: string;
let driver: SimulatedDriver;

beforeAll(async () => {
  nats = await startTestNats();
  stateDir = makeTestStateDir();
  storeDir = path.join(stateDir, 'store');
  driver = new SimulatedDriver({ hostId: 'h2', stateDir });
});

afterAll(async () => {
  for (const vm of await driver.listVms()) await driver.destroyVm(vm.vmId);
  await nats.stop();
  await fs.rm(stateDir, { recursive: true, force: true });
});

function vmmLog(): string {
  return new VmRecordStore(path.join(stateDir, 'hosts', 'h2', 'vms')).paths(VM).log;
}

test('a destination whose store cannot say whether the source handed over is kept, and removed once the store answers', async () => {
  const activities = createActivities({
    hostId: 'h2',
    driver,
    natsUrl: nats.url,
    defaultStore: storeDir,
    storeRoots: [storeDir],
    dumpsDir: path.join(stateDir, 'dumps'),
  });
  const ref = { vmId: VM, migrationId: MIGRATION };
  await activities.prepareDestination({ ...ref, memoryBytes: MEMORY_BYTES, store: storeDir });
  const vmm = await driver.control(VM);
  try {
    await vmm.call('migration.startIncoming', {
      migrationId: MIGRATION,
      natsUrl: nats.url,
      store: storeDir,
      hostId: 'h2',
      baseEpoch: 1,
      creditWindow: 8,
    });
  } finally {
    vmm.close();
  }
  // The migration's folder exists (the source created its page file); its mailbox cannot be read.
  const control = path.join(storeDir, 'migrations', MIGRATION, 'control');
  await fs.mkdir(path.dirname(control), { recursive: true });
  await fs.writeFile(control, 'not a folder');

  const startedAt = Date.now();
  const outcome = await activities.abortDestination(ref).then(
    (result) => ({ resolved: result }),
    (err: unknown) => err,
  );

  expect(outcome).toMatchObject({ type: 'VmStateUnknown', nonRetryable: true });
  // The destination, which may hold the VM's only copy, is still there and still receiving.
  expect(await driver.getVm(VM)).toMatchObject({ vmId: VM, mode: 'incoming' });
  // It asked the store again and again for the whole limit before giving up.
  expect(Date.now() - startedAt).toBeGreaterThanOrEqual(DEFAULT_ANSWER_LIMIT_MS - 2_000);
  expect(readFileSync(vmmLog(), 'utf8')).toMatch(/settle: reading the mailbox failed \(attempt 5\)/);

  // The store answers again, and says no final request was posted: now the copy may go.
  await fs.rm(control);
  await expect(activities.abortDestination(ref)).resolves.toEqual({ resumed: false });
  expect(await driver.getVm(VM)).toBeUndefined();
});
