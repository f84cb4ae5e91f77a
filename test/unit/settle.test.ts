/**
 * The store's honesty at the end of a migration: a store that fails to answer is never read as
 * "no final request" or "claim lost". Failures are injected through the project's own interfaces
 * (PageStore, ObjectStore, HostContext) around real stores in a temp directory.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fillAndVerifyUntilAnswered } from '../../data-plane/final-fill';
import { settleIncoming, type SettleTarget } from '../../data-plane/incoming-settle';
import type { FinalReply, FinalRequest } from '../../model/protocol';
import { createMigrationActivities } from '../../activities/migration-activities';
import type { HostContext } from '../../activities/host-context';
import { DirectoryObjectStore } from '../../store/object/directory-object-store';
import { DirectoryPageStore } from '../../store/directory/directory-page-store';
import { commitObjectClaim } from '../../store/object/object-page-ownership';
import { ObjectPageStore } from '../../store/object/object-page-store';
import type { ObjectStore } from '../../store/object/object-store';
import { claimOwnership, readOwner, releaseOwnership } from '../../store/directory/ownership';
import type { PageStore } from '../../store/page-store';
import type { HypervisorDriver, VmRecord } from '../../vmm/driver';
import { GuestMemory } from '../../vmm/guest-memory';
import { DEFAULT_WORKLOAD } from '../../vmm/workload';
import { contentCheckOf } from './support/content-check';

const FAST = { initialDelayMs: 1, maxDelayMs: 5 };

/** A directory page store whose mailbox reads fail while `failReads` is above zero (or forever if Infinity). */
class FlakyMailboxStore extends DirectoryPageStore implements PageStore {
  failReads = 0;
  reads = 0;

  override async readMessage<T>(migrationId: string, name: string): Promise<T | undefined> {
    this.reads += 1;
    if (this.failReads > 0) {
      this.failReads -= 1;
      throw Object.assign(new Error(`EACCES: permission denied, open 'control/${name}.json'`), { code: 'EACCES' });
    }
    return super.readMessage<T>(migrationId, name);
  }
}

/** An object store that stores a put and then loses its answer, `lostAnswers` times. */
class LostAnswerObjects implements ObjectStore {
  lostAnswers = 0;
  failedGets = 0;
  constructor(private readonly inner: ObjectStore) {}
  get location(): string {
    return this.inner.location;
  }
  async put(key: string, body: Uint8Array, options?: Parameters<ObjectStore['put']>[2]): Promise<{ etag: string }> {
    const result = await this.inner.put(key, body, options);
    if (this.lostAnswers > 0) {
      this.lostAnswers -= 1;
      throw Object.assign(new Error(`S3 endpoint unreachable: socket hang up after PUT ${key}`), {
        name: 'StoreUnreachableError',
      });
    }
    return result;
  }
  async get(key: string, options?: Parameters<ObjectStore['get']>[1]): ReturnType<ObjectStore['get']> {
    if (this.failedGets > 0) {
      this.failedGets -= 1;
      throw new Error(`S3 endpoint unreachable: GET ${key}`);
    }
    return this.inner.get(key, options);
  }
  head(key: string): ReturnType<ObjectStore['head']> {
    return this.inner.head(key);
  }
  list(prefix?: string): Promise<string[]> {
    return this.inner.list(prefix);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}

const REQUEST: FinalRequest = {
  type: 'final',
  finalSeq: 7,
  digest: 'ab'.repeat(32),
  contentDigest: 'cd'.repeat(16),
  stunAt: 1,
  workload: DEFAULT_WORKLOAD,
  seed: 1,
};

describe('settling a destination whose source may be gone', () => {
  let dir: string;
  let store: FlakyMailboxStore;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-settle-'));
    store = new FlakyMailboxStore(dir);
    // The migration's folder exists (the source created its page file), so the mailbox takes posts.
    fs.mkdirSync(path.join(dir, 'migrations', 'm1'), { recursive: true });
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function target(): SettleTarget & { finish: jest.Mock } {
    let finishing: Promise<FinalReply> | undefined;
    const finish = jest.fn(async (request: FinalRequest) => {
      finishing = Promise.resolve({ ok: true, digest: request.digest } as unknown as FinalReply);
      return finishing;
    });
    return {
      store,
      migrationId: 'm1',
      awaitingFinal: () => finishing === undefined,
      finish,
      finishing: () => finishing,
      openRequest: (message) => message as FinalRequest,
      undecided: () => undefined,
      log: () => undefined,
    };
  }

  it('reads the mailbox again after failed reads and finishes from the file the source committed to', async () => {
    await store.postMessage('m1', 'final', REQUEST);
    store.failReads = 3;
    const t = target();

    await settleIncoming(t, FAST);

    expect(store.reads).toBe(4);
    expect(t.finish).toHaveBeenCalledWith(REQUEST);
  });

  it('never finishes nor lets go when the store does not answer: it reports the question undecided', async () => {
    await store.postMessage('m1', 'final', REQUEST);
    store.failReads = Infinity;
    const t = target();

    const settled = settleIncoming(t, { ...FAST, limitMs: 50 });

    await expect(settled).rejects.toMatchObject({ name: 'StoreUndecidedError' });
    await expect(settled).rejects.toThrow(/posted its final request/);
    expect(t.finish).not.toHaveBeenCalled();
  });

  it('lets go only when the store answers that no final request was posted', async () => {
    store.failReads = 2;
    const t = target();

    await settleIncoming(t, FAST);

    expect(store.reads).toBe(3);
    expect(t.finish).not.toHaveBeenCalled();
  });

  it('does not destroy the destination when settling it fails for want of an answer from the store', async () => {
    const record = { vmId: 'vm1', mode: 'incoming' } as VmRecord;
    const destroyVm = jest.fn(async () => undefined);
    const driver = { getVm: async () => record, destroyVm } as unknown as HypervisorDriver;
    const host = {
      hostId: 'h2',
      driver,
      nats: { url: 'nats://127.0.0.1:1' },
      defaultStore: dir,
      dumpsDir: path.join(dir, 'dumps'),
      allowedStore: (ref: string) => ref,
      activeMigrations: async () => ['m1'],
      summarize: async () => undefined,
      guarded: <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => fn,
      // The destination VMM's abortIncoming settles first, and settling could not learn the answer.
      engine: async (_vmId: string, method: string) => {
        if (method !== 'migration.abortIncoming') throw new Error(`unexpected ${method}`);
        return settleIncoming({ ...target(), migrationId: 'm1' }, { ...FAST, limitMs: 20 });
      },
    } as unknown as HostContext;
    store.failReads = Infinity;

    const aborted = createMigrationActivities(host).abortDestination({ vmId: 'vm1', migrationId: 'm1' });

    await expect(aborted).rejects.toMatchObject({ name: 'StoreUndecidedError' });
    expect(destroyVm).not.toHaveBeenCalled();
  });
});

describe('an ownership claim whose answer is lost', () => {
  let dir: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-claim-'));
  });

  afterEach(() => {
    jest.restoreAllMocks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const claim = { vmId: 'vm1', epoch: 2, hostId: 'h2', migrationId: 'm1' };

  it('counts as taken on an object store when the PUT landed but its answer failed', async () => {
    const objects = new LostAnswerObjects(new DirectoryObjectStore(dir));
    objects.lostAnswers = 1;
    objects.failedGets = 2;
    const store = new ObjectPageStore(objects, dir);

    const result = await store.commitClaim(await store.prepareClaim(claim));

    expect(result).toMatchObject({ won: true, record: claim });
    expect(await store.readOwner('vm1')).toMatchObject(claim);
  });

  it('counts as lost on an object store when the record that landed is another host’s', async () => {
    const objects = new LostAnswerObjects(new DirectoryObjectStore(dir));
    await commitObjectClaim(objects, { ...claim, hostId: 'h1', migrationId: 'rollback', at: 'x' });
    objects.failedGets = 1;

    const result = await commitObjectClaim(objects, { ...claim, at: 'y' }, FAST);

    expect(result).toMatchObject({ won: false, record: { hostId: 'h1' } });
  });

  it('counts as taken on a directory store when the link landed but the folder fsync failed', async () => {
    const realOpen = fs.promises.open.bind(fs.promises);
    let failedSyncs = 0;
    jest.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof fs.promises.open>) => {
      const handle = await realOpen(...args);
      if (String(args[0]).endsWith(path.join('owners', 'vm1')) && failedSyncs === 0) {
        failedSyncs += 1;
        handle.sync = async () => {
          throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
        };
      }
      return handle;
    });

    const result = await claimOwnership(dir, claim, FAST);

    expect(failedSyncs).toBe(1);
    expect(result).toMatchObject({ won: true, record: claim });
    expect(await readOwner(dir, 'vm1')).toMatchObject(claim);
  });

  it('is reported undecided, not lost, when the store never answers whether it landed', async () => {
    const objects = new LostAnswerObjects(new DirectoryObjectStore(dir));
    objects.lostAnswers = 1;
    objects.failedGets = Infinity;

    const result = commitObjectClaim(objects, { ...claim, at: 'z' }, { ...FAST, limitMs: 30 });

    await expect(result).rejects.toMatchObject({ name: 'StoreUndecidedError' });
  });
});

describe('releasing ownership on a directory store', () => {
  let dir: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-release-'));
  });

  afterEach(() => {
    jest.restoreAllMocks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('removes only the epochs it read, never one another host created after it read the owner', async () => {
    await claimOwnership(dir, { vmId: 'vm1', epoch: 1, hostId: 'h1', migrationId: 'created' });
    await claimOwnership(dir, { vmId: 'vm1', epoch: 2, hostId: 'h1', migrationId: 'back-home' });
    const realReaddir = fs.promises.readdir.bind(fs.promises) as (dir: string) => Promise<string[]>;
    let listings = 0;
    // Host h2 takes epoch 3 just after the release has read the owner (epoch 2, h1).
    jest.spyOn(fs.promises, 'readdir').mockImplementation((async (target: string) => {
      const names = await realReaddir(target);
      listings += 1;
      if (listings === 1) await claimOwnership(dir, { vmId: 'vm1', epoch: 3, hostId: 'h2', migrationId: 'm9' });
      return names;
    }) as unknown as typeof fs.promises.readdir);

    expect(await releaseOwnership(dir, 'vm1', 'h1')).toBe(true);

    jest.restoreAllMocks();
    expect(await readOwner(dir, 'vm1')).toMatchObject({ epoch: 3, hostId: 'h2', migrationId: 'm9' });
    expect(fs.readdirSync(path.join(dir, 'owners', 'vm1'))).toEqual(['0000000003.json']);
  });

  it('forgets every epoch of a VM its host destroyed, and refuses another host', async () => {
    await claimOwnership(dir, { vmId: 'vm1', epoch: 1, hostId: 'h1', migrationId: 'created' });
    await claimOwnership(dir, { vmId: 'vm1', epoch: 2, hostId: 'h2', migrationId: 'm1' });

    expect(await releaseOwnership(dir, 'vm1', 'h1')).toBe(false);
    expect(await releaseOwnership(dir, 'vm1', 'h2')).toBe(true);
    expect(await readOwner(dir, 'vm1')).toBeUndefined();
  });
});

describe('the final fill on a store that fails', () => {
  const PAGES = 32;
  let dir: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-fill-'));
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** A page file holding every page of a written guest, and that guest. */
  async function committedSource(): Promise<GuestMemory> {
    const source = GuestMemory.create(PAGES);
    for (let i = 0; i < PAGES; i += 1) source.writePage(i, 3, 5);
    const writer = await new DirectoryPageStore(dir).createPageFile({
      migrationId: 'm1',
      vmId: 'vm1',
      pageCount: PAGES,
    });
    const indexes = Uint32Array.from({ length: PAGES }, (_, i) => i);
    writer.writePages(
      Array.from(indexes, (index) => ({ index, version: 3 })),
      Buffer.from(source.bytes),
    );
    await writer.sync();
    await writer.writeManifest({
      round: 0,
      final: true,
      indexes,
      versions: indexes.map(() => 3),
      finalSeq: 1,
      digest: '',
    });
    await writer.close();
    return source;
  }

  /** The store, whose page file cannot be opened the first `failures` times. */
  function failingOpens(failures: number): DirectoryPageStore & { opens: number } {
    const store = Object.assign(new DirectoryPageStore(dir), { opens: 0 });
    const open = store.openPageFile.bind(store);
    store.openPageFile = async (migrationId: string) => {
      store.opens += 1;
      if (store.opens <= failures) throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      return open(migrationId);
    };
    return store;
  }

  it('reads the page file again after the store failed, and brings memory to the source’s digest', async () => {
    const source = await committedSource();
    const store = failingOpens(2);
    const memory = GuestMemory.create(PAGES);

    const result = await fillAndVerifyUntilAnswered(
      { store, migrationId: 'm1', memory, torn: new Set(), digest: source.digest(), content: contentCheckOf(source) },
      FAST,
    );

    expect(store.opens).toBe(3);
    expect(result).toMatchObject({ digest: source.digest(), pagesFromStore: PAGES });
  });

  it('fails at once, without asking again, when the store answered and memory does not match', async () => {
    await committedSource();
    const store = failingOpens(0);

    const fill = fillAndVerifyUntilAnswered(
      {
        store,
        migrationId: 'm1',
        memory: GuestMemory.create(PAGES),
        torn: new Set(),
        digest: 'not-the-digest',
        content: contentCheckOf(GuestMemory.create(PAGES)),
      },
      FAST,
    );

    await expect(fill).rejects.toMatchObject({ name: 'VerificationError' });
    expect(store.opens).toBe(1);
  });
});
