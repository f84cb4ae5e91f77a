import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import type { TestSeaweed } from '../../harness';
import { startTestSeaweed } from '../../harness';
import { pickFreePort } from '../../infra';
import { DirectoryObjectStore } from '../../store/object/directory-object-store';
import type { ObjectStore } from '../../store/object/object-store';
import type { S3ObjectStoreOptions } from '../../store/object/s3-object-store';
import { S3ObjectStore } from '../../store/object/s3-object-store';

jest.setTimeout(120_000);

const BUCKET = 'ferry-objects';
let seaweed: TestSeaweed;
let tempDir: string;
const s3Stores: S3ObjectStore[] = [];

function s3Options(overrides: Partial<S3ObjectStoreOptions> = {}): S3ObjectStoreOptions {
  const { endpoint, region, accessKeyId, secretAccessKey } = seaweed;
  return { endpoint, region, bucket: BUCKET, credentials: { accessKeyId, secretAccessKey }, ...overrides };
}

function openS3(overrides: Partial<S3ObjectStoreOptions> = {}): S3ObjectStore {
  const store = new S3ObjectStore(s3Options(overrides));
  s3Stores.push(store);
  return store;
}

/** How long `work` took to settle (ms), and its rejection. */
async function timed(work: Promise<unknown>): Promise<{ elapsedMs: number; error: unknown }> {
  const startedAt = Date.now();
  const error = await work.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  return { elapsedMs: Date.now() - startedAt, error };
}

beforeAll(async () => {
  seaweed = await startTestSeaweed();
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-object-store-'));
  const { endpoint, region, accessKeyId, secretAccessKey } = seaweed;
  const credentials = { accessKeyId, secretAccessKey };
  const admin = new S3Client({ endpoint, region, credentials, forcePathStyle: true, maxAttempts: 1 });
  await admin.send(new CreateBucketCommand({ Bucket: BUCKET }));
  admin.destroy();
});

afterAll(async () => {
  s3Stores.forEach((store) => store.close());
  await seaweed?.stop();
  if (tempDir !== undefined) fs.rmSync(tempDir, { recursive: true, force: true });
});

const adapters: [string, (prefix: string) => ObjectStore][] = [
  ['S3 on SeaweedFS', (prefix) => openS3({ prefix })],
  [
    'a directory',
    (prefix) => {
      fs.mkdirSync(path.join(tempDir, prefix));
      return new DirectoryObjectStore(path.join(tempDir, prefix));
    },
  ],
];

describe.each(adapters)('the object store on %s', (_name, open) => {
  let store: ObjectStore;
  let run = 0;

  beforeEach(() => {
    run += 1;
    store = open(`contract-${run}`);
  });

  it('returns the bytes it stored, with the etag the put returned', async () => {
    const body = randomBytes(1024 * 1024 + 4096);
    const { etag } = await store.put('chunks/000001', body);
    const got = await store.get('chunks/000001');
    expect(got?.body.equals(body)).toBe(true);
    expect(got?.etag).toBe(etag);
    expect(await store.head('chunks/000001')).toEqual({ etag, size: body.length });
  });

  it('reports a missing key as undefined from get and head', async () => {
    expect(await store.get('chunks/missing')).toBeUndefined();
    expect(await store.head('chunks/missing')).toBeUndefined();
    expect(await store.get('no/such/folder/key', { range: { offset: 0, length: 10 } })).toBeUndefined();
  });

  it('lists the keys under a prefix, sorted, and nothing under an unknown one', async () => {
    for (const key of ['m/a/2', 'm/a/1', 'm/b/1', 'm/ab', 'n/1']) await store.put(key, Buffer.from(key));
    expect(await store.list('m/a/')).toEqual(['m/a/1', 'm/a/2']);
    expect(await store.list('m/a')).toEqual(['m/a/1', 'm/a/2', 'm/ab']);
    expect(await store.list()).toEqual(['m/a/1', 'm/a/2', 'm/ab', 'm/b/1', 'n/1']);
    expect(await store.list('x/')).toEqual([]);
  });

  it('deletes an object, and deleting a missing one succeeds', async () => {
    await store.put('d/1', Buffer.from('gone soon'));
    await store.delete('d/1');
    expect(await store.get('d/1')).toBeUndefined();
    expect(await store.list('d/')).toEqual([]);
    await expect(store.delete('d/1')).resolves.toBeUndefined();
    await expect(store.delete('never/was')).resolves.toBeUndefined();
  });

  it('refuses ifNoneMatch * on an existing key and keeps the object', async () => {
    await store.put('owner/epoch-1', Buffer.from('host-a'), { ifNoneMatch: '*' });
    const refused = store.put('owner/epoch-1', Buffer.from('host-b'), { ifNoneMatch: '*' });
    await expect(refused).rejects.toMatchObject({ name: 'PreconditionFailedError', key: 'owner/epoch-1' });
    await expect(refused).rejects.toThrow(/owner\/epoch-1.*already exists/);
    expect((await store.get('owner/epoch-1'))?.body.toString()).toBe('host-a');
  });

  it('replaces with ifMatch only while the etag is current', async () => {
    const first = await store.put('pointer', Buffer.from('v1'));
    const second = await store.put('pointer', Buffer.from('v2'), { ifMatch: first.etag });
    expect(second.etag).not.toBe(first.etag);
    const stale = store.put('pointer', Buffer.from('v3'), { ifMatch: first.etag });
    await expect(stale).rejects.toMatchObject({ name: 'PreconditionFailedError', condition: 'ifMatch' });
    expect((await store.get('pointer'))?.body.toString()).toBe('v2');
    const missing = store.put('no-pointer', Buffer.from('v1'), { ifMatch: first.etag });
    await expect(missing).rejects.toMatchObject({ name: 'PreconditionFailedError', condition: 'ifMatch' });
    expect(await store.head('no-pointer')).toBeUndefined();
  });

  it('lets exactly one of 8 concurrent ifNoneMatch creators win, and keeps its bytes', async () => {
    const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`claim of host ${i}`));
    const results = await Promise.allSettled(
      bodies.map((body) => store.put('race/create', body, { ifNoneMatch: '*' })),
    );
    const winners = results.flatMap((result, i) => (result.status === 'fulfilled' ? [i] : []));
    expect(winners).toHaveLength(1);
    for (const result of results) {
      if (result.status === 'rejected') expect(result.reason).toMatchObject({ name: 'PreconditionFailedError' });
    }
    expect((await store.get('race/create'))?.body.equals(bodies[winners[0]!]!)).toBe(true);
  });

  it('lets exactly one of 8 concurrent ifMatch writers of the same etag win', async () => {
    const { etag } = await store.put('race/swap', Buffer.from('epoch 1'));
    const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`epoch 2 by host ${i}`));
    const results = await Promise.allSettled(bodies.map((body) => store.put('race/swap', body, { ifMatch: etag })));
    const winners = results.flatMap((result, i) => (result.status === 'fulfilled' ? [i] : []));
    expect(winners).toHaveLength(1);
    expect((await store.get('race/swap'))?.body.equals(bodies[winners[0]!]!)).toBe(true);
  });

  it('reads a byte range, cut at the end of the object, with the size of the whole', async () => {
    const body = randomBytes(3 * 4096);
    const { etag } = await store.put('ranged', body);
    const middle = await store.get('ranged', { range: { offset: 4096, length: 4096 } });
    expect(middle?.body.equals(body.subarray(4096, 8192))).toBe(true);
    expect(middle).toMatchObject({ etag, size: body.length });
    const tail = await store.get('ranged', { range: { offset: 10_000, length: 9_999 } });
    expect(tail?.body.equals(body.subarray(10_000))).toBe(true);
    const past = await store.get('ranged', { range: { offset: body.length, length: 1 } });
    expect(past).toMatchObject({ etag, size: body.length });
    expect(past?.body.length).toBe(0);
  });

  it('refuses keys outside the key alphabet before touching the store', async () => {
    await expect(store.put('../escape', Buffer.from('x'))).rejects.toThrow(/object key must be/);
    await expect(store.get('chunks/.hidden')).rejects.toThrow(/"chunks\/.hidden"/);
    await expect(store.get('ok', { range: { offset: 0, length: 0 } })).rejects.toThrow(/length >= 1/);
  });
});

describe('the directory object store when things are wrong', () => {
  it('breaks the lock of a writer that died, and waits a bounded time on a live one', async () => {
    const dir = fs.mkdtempSync(path.join(tempDir, 'locks-'));
    const store = new DirectoryObjectStore(dir, 300);
    const { etag } = await store.put('owner', Buffer.from('epoch 1'));
    const lock = path.join(dir, '.owner.lock');
    fs.writeFileSync(lock, '');
    const { elapsedMs, error } = await timed(store.put('owner', Buffer.from('epoch 2'), { ifMatch: etag }));
    expect(error).toMatchObject({ name: 'ObjectStoreError', key: 'owner', store: dir });
    expect((error as Error).message).toContain(`its lock ${lock} has been held for`);
    expect(elapsedMs).toBeLessThan(2_000);
    const longAgo = new Date(Date.now() - 60_000);
    fs.utimesSync(lock, longAgo, longAgo);
    await store.put('owner', Buffer.from('epoch 2'), { ifMatch: etag });
    expect((await store.get('owner'))?.body.toString()).toBe('epoch 2');
    expect(fs.existsSync(lock)).toBe(false);
  });

  it('names the directory when it does not exist, and creates nothing', async () => {
    const dir = path.join(tempDir, 'never-mounted');
    const error = await new DirectoryObjectStore(dir).put('k', Buffer.from('x')).catch((reason: unknown) => reason);
    expect(error).toMatchObject({ name: 'ObjectStoreError', store: dir, key: 'k' });
    expect((error as Error).message).toContain('the store directory does not exist');
    expect(fs.existsSync(dir)).toBe(false);
  });
});

describe('the S3 object store when things are wrong', () => {
  it('names the bucket and the endpoint when the bucket does not exist', async () => {
    const store = openS3({ bucket: 'no-such-bucket' });
    const calls = [() => store.put('k', Buffer.from('x')), () => store.get('k'), () => store.head('k')];
    for (const work of [...calls, () => store.list(), () => store.delete('k')]) {
      const { elapsedMs, error } = await timed(work());
      expect(error).toMatchObject({
        name: 'BucketNotFoundError',
        bucket: 'no-such-bucket',
        endpoint: seaweed.endpoint,
      });
      expect((error as Error).message).toContain(`bucket no-such-bucket does not exist at ${seaweed.endpoint}`);
      expect(elapsedMs).toBeLessThan(2_000);
    }
  });

  it('names the endpoint, bucket and key id when the credentials are wrong, without retrying', async () => {
    const wrongSecret = openS3({ credentials: { accessKeyId: seaweed.accessKeyId, secretAccessKey: 'not-it' } });
    const unknownKey = openS3({ credentials: { accessKeyId: 'FERRYUNKNOWNKEY0', secretAccessKey: 'not-it' } });
    for (const work of [
      () => wrongSecret.put('k', Buffer.from('x')),
      () => wrongSecret.head('k'),
      () => unknownKey.list(),
    ]) {
      const { elapsedMs, error } = await timed(work());
      expect(error).toMatchObject({ name: 'StoreAccessDeniedError', endpoint: seaweed.endpoint, bucket: BUCKET });
      expect((error as Error).message).toMatch(/S3 access denied \[endpoint=http:\/\/127\.0\.0\.1:\d+, bucket=/);
      expect(elapsedMs).toBeLessThan(2_000);
    }
  });

  it('gives up on an endpoint nobody listens on after its retry budget, naming the endpoint', async () => {
    const endpoint = `http://127.0.0.1:${await pickFreePort()}`;
    const store = openS3({ endpoint, retry: { retryForMs: 1_500 } });
    const { elapsedMs, error } = await timed(store.put('chunks/1', Buffer.from('x')));
    expect(error).toMatchObject({ name: 'StoreUnreachableError', endpoint, bucket: BUCKET, key: 'chunks/1' });
    expect((error as Error).message).toContain(`S3 endpoint unreachable [endpoint=${endpoint}`);
    expect((error as { attempts: number }).attempts).toBeGreaterThan(2);
    expect(elapsedMs).toBeGreaterThan(500);
    expect(elapsedMs).toBeLessThan(3_000);
  });

  it('carries a sequence of conditional puts through a SIGKILL and restart of the server', async () => {
    const store = openS3({ prefix: 'crash' });
    const bodies = Array.from({ length: 24 }, () => randomBytes(256 * 1024));
    let killed: Promise<void> | undefined;
    const putMs: number[] = [];
    const startedAt = Date.now();
    try {
      for (const [i, body] of bodies.entries()) {
        if (i === 6) {
          seaweed.kill('SIGKILL');
          killed = seaweed.restart();
        }
        const putStartedAt = Date.now();
        await store.put(`chunks/${String(i).padStart(4, '0')}`, body, { ifNoneMatch: '*' });
        putMs.push(Date.now() - putStartedAt);
      }
    } finally {
      // Even when a put failed: a restart still under way when afterAll stops the server would outlive it.
      await killed;
    }
    const elapsedMs = Date.now() - startedAt;
    // The put after the kill waited out the restart (about 3 s) in its retries.
    expect(Math.max(...putMs)).toBeGreaterThan(1_000);
    expect(elapsedMs).toBeLessThan(20_000);
    for (const [i, body] of bodies.entries()) {
      expect((await store.get(`chunks/${String(i).padStart(4, '0')}`))?.body.equals(body)).toBe(true);
    }
    expect(await store.list('chunks/')).toHaveLength(bodies.length);
  });
});

describe('the S3 object store and the default credential chain', () => {
  const probeVariables = {
    AWS_DEFAULTS_MODE: 'auto',
    AWS_EC2_METADATA_SERVICE_ENDPOINT: '',
    AWS_CONTAINER_CREDENTIALS_FULL_URI: '',
    AWS_CONFIG_FILE: '/nonexistent/ferry-aws-config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/ferry-aws-credentials',
    AWS_EC2_METADATA_DISABLED: undefined,
    AWS_ACCESS_KEY_ID: undefined,
    AWS_SECRET_ACCESS_KEY: undefined,
    AWS_SESSION_TOKEN: undefined,
    AWS_PROFILE: undefined,
  };
  const saved = Object.fromEntries(Object.keys(probeVariables).map((name) => [name, process.env[name]]));
  const probes: string[] = [];
  let metadata: http.Server;

  function setEnv(values: Record<string, string | undefined>): void {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }

  beforeAll(async () => {
    // Stands in for instance metadata (EC2) and the container credential endpoint (ECS) on loopback.
    metadata = http.createServer((request, response) => {
      probes.push(`${request.method} ${request.url}`);
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => metadata.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(metadata.address() as AddressInfo).port}`;
    setEnv({
      ...probeVariables,
      AWS_EC2_METADATA_SERVICE_ENDPOINT: url,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `${url}/creds`,
    });
  });

  afterAll(async () => {
    setEnv(saved);
    await new Promise((resolve) => metadata?.close(resolve));
  });

  it('never asks instance metadata or the container endpoint, where a client without credentials does', async () => {
    const store = openS3({ prefix: 'probe' });
    await store.put('k', Buffer.from('x'));
    expect((await store.get('k'))?.body.toString()).toBe('x');
    await store.list();
    expect(probes).toEqual([]);

    const { endpoint, region } = seaweed;
    const defaultChain = new S3Client({ endpoint, region, forcePathStyle: true, maxAttempts: 1 });
    try {
      await expect(defaultChain.send(new ListBucketsCommand({}))).rejects.toThrow();
    } finally {
      defaultChain.destroy();
    }
    expect(probes.length).toBeGreaterThan(0);
  });
});
