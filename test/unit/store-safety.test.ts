/**
 * The file system's safety below the id checks at the entry points: paths derived from ids and
 * inputs stay under their roots, cleanup deletes only what the store wrote, a page file's header is
 * checked before it is trusted, the final fill reads in bounded pieces, and what the directory
 * store, the VM records and dumps create is readable by the owner only.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHostContext, type HostContext } from '../../activities/host-context';
import { createMigrationActivities } from '../../activities/migration-activities';
import { createVmActivities } from '../../activities/vm-activities';
import { fillAndVerify, MAX_FILL_RUN_PAGES } from '../../data-plane/final-fill';
import { DirectoryObjectStore } from '../../store/object/directory-object-store';
import { DirectoryPageStore } from '../../store/directory/directory-page-store';
import { postMessage } from '../../store/directory/mailbox';
import { ObjectPageStore } from '../../store/object/object-page-store';
import { claimOwnership, readOwner, releaseOwnership } from '../../store/directory/ownership';
import { PAGE_FILE_HEADER_BYTES, PageFile, removeMigrationFiles } from '../../store/directory/page-file';
import type { PageFile as PageFileApi, PageStore } from '../../store/page-store';
import { pathUnder } from '../../store/safe-path';
import { writeDirectoryVmHistory } from '../../store/vm-history';
import { ferryEnvironment } from '../../temporal-config';
import { SimulatedDriver, type HypervisorDriver, type VmRecord } from '../../vmm/driver';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import type { VmmClient } from '../../vmm/vmm-client';
import { VmRecordStore } from '../../vmm/vm-records';
import { contentCheckOf } from './support/content-check';

const SEED = 11;

let top: string;
let stateDir: string;
let storeDir: string;

beforeEach(() => {
  top = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-safety-'));
  stateDir = path.join(top, 'state');
  storeDir = path.join(stateDir, 'store');
  fs.mkdirSync(storeDir, { recursive: true });
});

afterEach(() => {
  jest.restoreAllMocks();
  fs.rmSync(top, { recursive: true, force: true });
});

/** A file outside every root, which no call in these tests may touch. */
function victim(name = 'victim.json'): { file: string; intact: () => boolean } {
  const file = path.join(top, name);
  fs.writeFileSync(file, 'keep me');
  return { file, intact: () => fs.existsSync(file) && fs.readFileSync(file, 'utf8') === 'keep me' };
}

/** A driver whose one VM `vm1` writes its memory where `dumpMemory` says, as the VMM does. */
function dumpingDriver(memory: Buffer): HypervisorDriver {
  const record = { vmId: 'vm1', mode: 'run', pageCount: 1 } as VmRecord;
  const client = {
    call: async (method: string, params?: { path: string }) => {
      if (method === 'dumpMemory' && params) fs.writeFileSync(params.path, memory);
      return { vcpu: { state: 'running', pagesWritten: 0 } };
    },
    close: () => undefined,
  } as unknown as VmmClient;
  return { getVm: async (vmId: string) => (vmId === 'vm1' ? record : undefined), control: async () => client } as never;
}

function host(driver: HypervisorDriver): HostContext {
  return createHostContext({
    hostId: 'h1',
    driver,
    nats: { url: 'nats://127.0.0.1:1' },
    defaultStore: storeDir,
    storeRoots: [storeDir],
    dumpsDir: path.join(stateDir, 'dumps'),
    clusterSecretFile: path.join(stateDir, 'cluster.key'),
  });
}

describe('paths derived from ids stay under their root', () => {
  it('resolves names inside the root and refuses names that climb out or are the root itself', () => {
    const root = path.join(top, 'root');
    expect(pathUnder(root, 'vm1.json')).toBe(path.join(root, 'vm1.json'));
    expect(pathUnder(root, '..json')).toBe(path.join(root, '..json'));
    expect(pathUnder(root, path.join(root, 'a', 'b'))).toBe(path.join(root, 'a', 'b'));
    for (const bad of ['../x.json', 'a/../../x', '/etc/passwd', '', '.', 'a/..', `${root}-sibling/x`, 'x\0y'])
      expect(() => pathUnder(root, bad, 'vmId')).toThrow(expect.objectContaining({ name: 'PathEscapeError' }));
  });

  it('refuses to destroy a VM whose id climbs out of the host folder, and the file it names survives', async () => {
    const outside = victim();
    const driver = new SimulatedDriver({ hostId: 'h1', stateDir });
    const activities = createVmActivities(host(driver));
    const vmId = `../../../../${path.basename(outside.file, '.json')}`;

    // The id pattern refuses it at the activity's entry; below it, the driver refuses it too.
    await expect(activities.destroyVm({ vmId })).rejects.toMatchObject({ type: 'InvalidInput', nonRetryable: true });
    await expect(driver.destroyVm(vmId)).rejects.toMatchObject({ name: 'PathEscapeError' });
    expect(outside.intact()).toBe(true);
  });

  it('refuses VM records, ownership records and history named by ids that climb out', async () => {
    const outside = victim();
    const records = new VmRecordStore(path.join(stateDir, 'hosts', 'h1', 'vms'));
    const escaping = `../../../../${path.basename(outside.file, '.json')}`;

    await expect(records.remove(escaping)).rejects.toMatchObject({ name: 'PathEscapeError' });
    await expect(records.read(escaping)).rejects.toMatchObject({ name: 'PathEscapeError' });
    await expect(releaseOwnership(storeDir, '../..', 'h1')).rejects.toMatchObject({ name: 'PathEscapeError' });
    await expect(readOwner(storeDir, '..')).rejects.toMatchObject({ name: 'PathEscapeError' });
    await expect(
      claimOwnership(storeDir, { vmId: '../../x', epoch: 1, hostId: 'h1', migrationId: 'm' }),
    ).rejects.toMatchObject({ name: 'PathEscapeError' });
    await expect(new DirectoryPageStore(storeDir).readVmHistory('../../../victim')).rejects.toMatchObject({
      name: 'PathEscapeError',
    });
    expect(outside.intact()).toBe(true);
  });

  it('writes a memory dump only under the dumps folder: absolute paths elsewhere and ../ paths are refused', async () => {
    const outside = victim('victim.mem');
    const activities = createVmActivities(host(dumpingDriver(Buffer.from('guest memory'))));

    for (const bad of [outside.file, '../victim.mem', '../../victim.mem', path.join(stateDir, 'dumps')])
      await expect(activities.dumpVmMemory({ vmId: 'vm1', path: bad })).rejects.toMatchObject({
        type: 'PathEscape',
      });
    expect(outside.intact()).toBe(true);

    await activities.dumpVmMemory({ vmId: 'vm1', path: 'vm1-h1.mem' });
    await activities.dumpVmMemory({ vmId: 'vm1', path: path.join(stateDir, 'dumps', 'vm1-again.mem') });
    expect(fs.readFileSync(path.join(stateDir, 'dumps', 'vm1-h1.mem'), 'utf8')).toBe('guest memory');
    expect(fs.existsSync(path.join(stateDir, 'dumps', 'vm1-again.mem'))).toBe(true);
  });

  it('refuses to remove a migration whose id is empty or climbs out, and nothing of the store goes', async () => {
    await claimOwnership(storeDir, { vmId: 'vm1', epoch: 1, hostId: 'h1', migrationId: 'created' });
    const outside = victim();

    for (const bad of ['', '.', '..', '../..', `../../../${path.basename(outside.file)}`])
      await expect(removeMigrationFiles(storeDir, bad)).rejects.toMatchObject({ name: 'PathEscapeError' });
    expect(await readOwner(storeDir, 'vm1')).toMatchObject({ hostId: 'h1', epoch: 1 });
    expect(outside.intact()).toBe(true);
  });

  it('removes a migration by the names the store wrote, leaving a foreign file and its folder in place', async () => {
    const file = await PageFile.create(storeDir, { migrationId: 'm1', vmId: 'vm1', pageCount: 4 });
    await file.writeManifest({
      round: 0,
      final: false,
      indexes: new Uint32Array(),
      versions: new Uint32Array(),
      finalSeq: 0,
      digest: '',
    });
    await file.writeManifest({
      round: 1,
      final: true,
      indexes: new Uint32Array(),
      versions: new Uint32Array(),
      finalSeq: 0,
      digest: '',
    });
    await file.markComplete();
    await file.close();
    await postMessage(storeDir, 'm1', 'final', { type: 'final' });
    const dir = path.join(storeDir, 'migrations', 'm1');
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not the store’s');

    await removeMigrationFiles(storeDir, 'm1');

    expect(fs.readdirSync(dir)).toEqual(['notes.txt']);
    fs.rmSync(path.join(dir, 'notes.txt'));
    await removeMigrationFiles(storeDir, 'm1');
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('refuses a migration store outside the allowed roots, and cleanup leaves that directory alone', async () => {
    const elsewhere = path.join(top, 'elsewhere');
    const file = await PageFile.create(elsewhere, { migrationId: 'm1', vmId: 'vm1', pageCount: 4 });
    await file.close();
    const activities = createMigrationActivities(host(new SimulatedDriver({ hostId: 'h1', stateDir })));

    for (const store of [elsewhere, '/', path.join(storeDir, '..')])
      await expect(activities.removeMigrationFiles({ vmId: 'vm1', migrationId: 'm1', store })).rejects.toMatchObject({
        type: 'StoreNotAllowed',
        message: expect.stringContaining('FERRY_STORE_ROOTS'),
      });
    expect(fs.existsSync(path.join(elsewhere, 'migrations', 'm1', 'pages.ferry'))).toBe(true);

    const inside = path.join(storeDir, 'team-a');
    await (await PageFile.create(inside, { migrationId: 'm1', vmId: 'vm1', pageCount: 4 })).close();
    await activities.removeMigrationFiles({ vmId: 'vm1', migrationId: 'm1', store: inside });
    expect(fs.existsSync(path.join(inside, 'migrations', 'm1'))).toBe(false);
  });

  it('allows the configured store and FERRY_STORE_ROOTS, and refuses a relative root', () => {
    expect(ferryEnvironment({ FERRY_STATE_DIR: '/srv/f' }).storeRoots).toEqual(['/srv/f/store']);
    expect(
      ferryEnvironment({
        FERRY_STATE_DIR: '/srv/f',
        FERRY_STORE: '/mnt/efs/ferry',
        FERRY_STORE_ROOTS: '/mnt/a:/mnt/b/',
      }).storeRoots,
    ).toEqual(['/srv/f/store', '/mnt/efs/ferry', '/mnt/a', '/mnt/b']);
    expect(ferryEnvironment({ FERRY_STATE_DIR: '/srv/f', FERRY_STORE: 's3://b/p' }).storeRoots).toEqual([
      '/srv/f/store',
    ]);
    expect(() => ferryEnvironment({ FERRY_STORE_ROOTS: 'relative/dir' })).toThrow(/FERRY_STORE_ROOTS/);
  });
});

describe("a page file's header is checked before it is trusted", () => {
  const PAGES = 8;
  let file: string;

  beforeEach(async () => {
    await (await PageFile.create(storeDir, { migrationId: 'm1', vmId: 'vm1', pageCount: PAGES })).close();
    file = path.join(storeDir, 'migrations', 'm1', 'pages.ferry');
  });

  /** Rewrites the header with `change` applied, then opens the file as migration m1. */
  async function openDamaged(change: (header: Buffer) => void): Promise<unknown> {
    const bytes = fs.readFileSync(file);
    change(bytes);
    fs.writeFileSync(file, bytes);
    return PageFile.open(storeDir, 'm1').then(
      async (opened) => {
        await opened.close();
        return undefined;
      },
      (err: unknown) => err,
    );
  }

  const meta = (header: Buffer, json: string): void => {
    header.fill(0, 28, PAGE_FILE_HEADER_BYTES);
    header.writeUInt32LE(Buffer.byteLength(json), 24);
    header.write(json, 28);
  };

  it.each([
    ['another migration', (h: Buffer) => meta(h, '{"migrationId":"m2","vmId":"vm1"}'), /belongs to migration "m2"/],
    ['no VM id', (h: Buffer) => meta(h, '{"migrationId":"m1"}'), /VM id undefined/],
    ['a page count of 0', (h: Buffer) => h.writeUInt32LE(0, 16), /page count 0/],
    ['more pages than the file holds', (h: Buffer) => h.writeUInt32LE(PAGES * 1000, 16), /need a file of/],
    ['a huge page count', (h: Buffer) => h.writeUInt32LE(0xffffffff, 16), /page count 4294967295/],
    ['another page size', (h: Buffer) => h.writeUInt32LE(8192, 12), /page size 8192/],
    ['pages at another offset', (h: Buffer) => h.writeUInt32LE(512, 20), /pages start at 512/],
    ['an id field longer than the header', (h: Buffer) => h.writeUInt32LE(1 << 30, 24), /claims 1073741824 bytes/],
    ['an id field that is not JSON', (h: Buffer) => h.write('{{{', 28), /not JSON/],
    ['another format', (h: Buffer) => h.write('NOTFERRY', 0), /wrong magic/],
  ])('refuses a header naming %s', async (_what, change, message) => {
    const err = (await openDamaged(change)) as Error & { cause?: Error };

    expect(err).toMatchObject({ name: 'PageStoreError' });
    expect(err.cause).toMatchObject({ name: 'PageFileHeaderError' });
    expect(err.cause?.message).toMatch(message);
  });

  it('opens the file whose header matches', async () => {
    expect(await openDamaged(() => undefined)).toBeUndefined();
  });

  it('refuses in the final fill a page file of another size than the guest', async () => {
    const memory = GuestMemory.create(PAGES * 2);
    memory.writePage(1, 1, SEED);

    const fill = fillAndVerify({
      store: new DirectoryPageStore(storeDir),
      migrationId: 'm1',
      memory: GuestMemory.create(PAGES * 2),
      torn: new Set(),
      digest: memory.digest(),
      content: contentCheckOf(memory),
    });

    await expect(fill).rejects.toThrow(/holds 8 pages, this guest has 16/);
  });
});

describe('the final fill', () => {
  it(`reads a long run of missing pages in pieces of at most ${MAX_FILL_RUN_PAGES} pages`, async () => {
    const PAGES = 1000;
    const source = GuestMemory.create(PAGES);
    for (let i = 0; i < PAGES; i += 1) source.writePage(i, 1, SEED);
    const real = new DirectoryPageStore(storeDir);
    const writer = await real.createPageFile({ migrationId: 'm1', vmId: 'vm1', pageCount: PAGES });
    writer.writePages(
      Array.from({ length: PAGES }, (_, index) => ({ index, version: 1 })),
      Buffer.from(source.bytes),
    );
    await writer.sync();
    const all = Uint32Array.from({ length: PAGES }, (_, i) => i);
    await writer.writeManifest({
      round: 0,
      final: true,
      indexes: all,
      versions: all.map(() => 1),
      finalSeq: 1,
      digest: '',
    });
    await writer.close();
    // The store trails: every page reads as never written the first time it is read.
    const readBefore = new Uint8Array(PAGES);
    const runs: number[] = [];
    const trailing: PageStore = Object.create(real) as PageStore;
    trailing.openPageFile = async (migrationId) => {
      const file = await real.openPageFile(migrationId);
      return new Proxy(file, {
        get(target, key) {
          if (key !== 'readPages') {
            const value = Reflect.get(target, key, target) as unknown;
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          }
          return async (first: number, count: number, into: Buffer) => {
            runs.push(count);
            await target.readPages(first, count, into);
            for (let i = 0; i < count; i += 1) {
              if (readBefore[first + i] === 0) into.fill(0, i * PAGE_SIZE_BYTES, (i + 1) * PAGE_SIZE_BYTES);
              readBefore[first + i] = 1;
            }
          };
        },
      }) as PageFileApi;
    };

    const memory = GuestMemory.create(PAGES);
    const result = await fillAndVerify({
      store: trailing,
      migrationId: 'm1',
      memory,
      torn: new Set(),
      digest: source.digest(),
      content: contentCheckOf(source),
    });

    expect(result.digest).toBe(source.digest());
    expect(runs.reduce((a, b) => a + b, 0)).toBe(2 * PAGES);
    expect(Math.max(...runs)).toBeLessThanOrEqual(MAX_FILL_RUN_PAGES);
  });
});

describe('what the directory store, VM records and dumps create', () => {
  let umask: number;

  beforeEach(() => {
    // The widest umask: only modes the code sets itself can pass.
    umask = process.umask(0);
  });

  afterEach(() => {
    process.umask(umask);
  });

  const modeOf = (p: string): string => (fs.statSync(p).mode & 0o777).toString(8);

  it('is readable by the owner only: files 0600, folders 0700, whatever the umask', async () => {
    const store = new DirectoryPageStore(path.join(top, 'new-store'));
    await store.assertWritable();
    const file = await store.createPageFile({ migrationId: 'm1', vmId: 'vm1', pageCount: 4 });
    await file.writeManifest({
      round: 0,
      final: false,
      indexes: new Uint32Array(),
      versions: new Uint32Array(),
      finalSeq: 0,
      digest: '',
    });
    await file.markComplete();
    await file.close();
    await store.postMessage('m1', 'final', { type: 'final' });
    await claimOwnership(store.dir, { vmId: 'vm1', epoch: 1, hostId: 'h1', migrationId: 'created' });
    await writeDirectoryVmHistory(store.dir, {
      vmId: 'vm1',
      migrationId: 'm1',
      at: 'now',
      sourceHost: 'h1',
      destinationHost: 'h2',
      policy: 'sdps',
      throttlePercent: 0,
      maxThrottlePercent: 0,
      rounds: 1,
      sendRateBytesPerSec: 1,
      dirtyRateBytesPerSec: 1,
    });
    const vms = path.join(stateDir, 'hosts', 'h1', 'vms');
    // A client on this machine made the dumps folder first, with its own mode.
    fs.mkdirSync(path.join(stateDir, 'dumps'), { mode: 0o777 });
    await new VmRecordStore(vms).write({ vmId: 'vm1' } as VmRecord);
    await createVmActivities(host(dumpingDriver(Buffer.alloc(64)))).dumpVmMemory({ vmId: 'vm1', path: 'vm1.mem' });

    const at = (...parts: string[]): string => path.join(store.dir, ...parts);
    const files = [
      at('migrations', 'm1', 'pages.ferry'),
      at('migrations', 'm1', 'manifest-00000.bin'),
      at('migrations', 'm1', 'complete'),
      at('migrations', 'm1', 'control', 'final.json'),
      at('owners', 'vm1', '0000000001.json'),
      at('history', 'vm1.json'),
      path.join(vms, 'vm1.json'),
      path.join(stateDir, 'dumps', 'vm1.mem'),
    ];
    const folders = [
      store.dir,
      at('migrations'),
      at('migrations', 'm1'),
      at('migrations', 'm1', 'control'),
      at('owners'),
      at('owners', 'vm1'),
      at('history'),
      path.join(stateDir, 'hosts'),
      vms,
      path.join(stateDir, 'dumps'),
    ];
    expect(Object.fromEntries(files.map((f) => [path.relative(top, f), modeOf(f)]))).toEqual(
      Object.fromEntries(files.map((f) => [path.relative(top, f), '600'])),
    );
    expect(Object.fromEntries(folders.map((f) => [path.relative(top, f), modeOf(f)]))).toEqual(
      Object.fromEntries(folders.map((f) => [path.relative(top, f), '700'])),
    );
  });
});

describe("an object store page file's header is checked before it is trusted", () => {
  it.each([
    ['another migration', '{"migrationId":"m2","vmId":"vm1","pageCount":4}', /not that of migration m1/],
    ['a page count of 0', '{"migrationId":"m1","vmId":"vm1","pageCount":0}', /0 pages/],
    ['a huge page count', '{"migrationId":"m1","vmId":"vm1","pageCount":4294967295}', /4294967295 pages/],
  ])('refuses a header naming %s', async (_what, header, message) => {
    const objects = new DirectoryObjectStore(storeDir);
    await objects.put('migrations/m1/header.json', Buffer.from(header));

    const opened = new ObjectPageStore(objects, storeDir).openPageFile('m1');

    await expect(opened).rejects.toMatchObject({ name: 'PageStoreError' });
    await expect(opened).rejects.toThrow(message);
  });
});
