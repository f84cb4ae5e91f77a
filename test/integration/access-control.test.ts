/**
 * Access control on the real nats-server of a test cluster: only hosts with credentials connect,
 * and each host may use only its role's subjects (data-plane/subjects.ts). A refused publish
 * shows as a permission error on the offender's connection, and the message never reaches the
 * subject's subscribers. Then TLS on the client connections, with a CA made by openssl, and
 * SeaweedFS's volume and filer ports, which refuse requests without a JWT signed by its master.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { connect, type NatsConnection, type NatsError } from 'nats';
import { connectNats, readNatsCredentials } from '../../data-plane/nats-client';
import { hostInboxPrefix, migrationSubjects } from '../../data-plane/subjects';
import { resolveBinary } from '../../infra/binaries';
import { createBucket } from '../../infra/seaweedfs-bucket';
import { readPortsRecord, seaweedPaths } from '../../infra/seaweedfs-files';
import { ensureNatsCredentials, hostNatsUsers } from '../../infra/nats-credentials';
import { startNatsServer, stopNatsServer } from '../../infra/nats-server';
import { pickFreePort } from '../../infra/ports';
import { makeTestStateDir, startTestNats, startTestSeaweed } from '../../harness/test-services';
import type { TestNats, TestSeaweed } from '../../harness/test-services';
import { useCluster } from './support/cluster-fixture';

jest.setTimeout(180_000);

const fx = useCluster({ hosts: ['h1', 'h2', 'h3'] });
const connections: NatsConnection[] = [];

afterEach(async () => {
  await Promise.all(connections.splice(0).map((nc) => nc.close().catch(() => undefined)));
});

function credentialsFile(hostId: string): string {
  const dir = fx.cluster.nats.credentialsDir;
  if (dir === undefined) throw new Error('the test cluster has no NATS credentials');
  return path.join(dir, `${hostId}.json`);
}

/** Connects as `hostId` with its own credentials file, as its VMMs do. */
async function connectAs(hostId: string, nats: TestNats = fx.cluster.nats): Promise<NatsConnection> {
  const nc = await connectNats({ url: nats.url, credentialsFile: credentialsFile(hostId) }, hostId, `test-${hostId}`);
  connections.push(nc);
  return nc;
}

/** Connects with the admin user, which may watch every subject. */
async function connectAdmin(): Promise<NatsConnection> {
  const { admin } = fx.cluster.nats;
  if (admin === undefined) throw new Error('the test cluster has no NATS admin');
  const nc = await connect({ servers: fx.cluster.nats.url, user: admin.user, pass: admin.password });
  connections.push(nc);
  return nc;
}

/** Resolves with the first error the server reports on `nc`'s connection: `<code> <operation> <subject>`. */
function firstError(nc: NatsConnection): Promise<string> {
  return (async () => {
    for await (const status of nc.status()) {
      if (status.type !== 'error') continue;
      const context = status.permissionContext;
      return `${String(status.data)} ${context?.operation ?? ''} ${context?.subject ?? ''}`;
    }
    return 'connection closed without an error';
  })();
}

/** Collects what arrives on `subject` (for the admin, who may subscribe to anything). */
function watch(nc: NatsConnection, subject: string): { received: string[]; next: () => Promise<string> } {
  const received: string[] = [];
  let waiter: ((data: string) => void) | undefined;
  nc.subscribe(subject, {
    callback: (_err, msg) => {
      const data = Buffer.from(msg.data).toString('utf8');
      received.push(data);
      waiter?.(data);
    },
  });
  return { received, next: () => new Promise((resolve) => (waiter = resolve)) };
}

test('a migration under per-host credentials streams every page over NATS and hands over on the network', async () => {
  const vmId = 'acl-guest';
  await fx.ferry.createVm('h1', {
    vmId,
    memoryBytes: 32 * 2 ** 20,
    workload: { type: 'hotset', rateBytesPerSec: 10e6, hotSetBytes: 4 * 2 ** 20 },
    seed: 5,
  });
  const workflowId = await fx.ferry.startMigration({ vmId, sourceHost: 'h1', destinationHost: 'h2' });
  const result = await fx.ferry.result(workflowId);
  expect(result.outcome).toBe('completed');
  expect(result.runningOn).toBe('h2');
  expect(result.switchover?.handoverLane).toBe('network');
  expect(result.rounds.every((r) => r.lane === 'network')).toBe(true);
  expect(result.gapBatches).toBe(0);
  expect(result.incidents).toEqual([]);
  expect(result.bytesViaNetwork).toBeGreaterThan(0);
  await fx.ferry.destroyVm('h2', vmId);
});

test('a client without credentials is refused', async () => {
  const refused = await connect({ servers: fx.cluster.nats.url, reconnect: false }).then(
    async (nc) => {
      await nc.close();
      return undefined;
    },
    (err: NatsError) => err,
  );
  expect(refused?.code).toBe('AUTHORIZATION_VIOLATION');
});

test('a client with a wrong password is refused', async () => {
  const { user } = readNatsCredentials(credentialsFile('h1'));
  const refused = await connect({ servers: fx.cluster.nats.url, user, pass: 'guessed', reconnect: false }).then(
    async (nc) => {
      await nc.close();
      return undefined;
    },
    (err: NatsError) => err,
  );
  expect(refused?.code).toBe('AUTHORIZATION_VIOLATION');
});

test("host h2's credentials cannot publish h1's pages or control requests: refused, and nothing arrives", async () => {
  const subjects = migrationSubjects('h1', 'h3', 'm-forged');
  const admin = await connectAdmin();
  const pages = watch(admin, subjects.pages);
  const control = watch(admin, subjects.control);
  await admin.flush();

  const forger = await connectAs('h2');
  const refusal = firstError(forger);
  forger.publish(subjects.pages, Buffer.from('forged batch'));
  expect(await refusal).toMatch('PERMISSIONS_VIOLATION publish ferry.h1.h3.m-forged.pages');
  const controlRefusal = firstError(forger);
  forger.publish(subjects.control, Buffer.from('{"type":"final"}'));
  expect(await controlRefusal).toMatch('PERMISSIONS_VIOLATION publish ferry.h1.h3.m-forged.control');

  // The real source's batch, published after the forged ones were refused, is the first to arrive.
  const source = await connectAs('h1');
  const arrived = pages.next();
  source.publish(subjects.pages, Buffer.from('real batch'));
  expect(await arrived).toBe('real batch');
  expect(pages.received).toEqual(['real batch']);
  expect(control.received).toEqual([]);
});

test("a host cannot read another pair's pages, grant credit as a source, or read another host's inbox", async () => {
  const h1toH2 = migrationSubjects('h1', 'h2', 'm-private');
  const h3 = await connectAs('h3');
  const refusals: string[] = [];
  const refused = new Promise<void>((resolve) => {
    for (const subject of [h1toH2.pages, `${hostInboxPrefix('h1')}.>`]) {
      h3.subscribe(subject, {
        callback: (err) => {
          if (err) refusals.push(err.message);
          if (refusals.length === 2) resolve();
        },
      });
    }
  });
  await refused;
  expect(refusals.join('\n')).toMatch(/permissions violation for subscription to "ferry\.h1\.h2\.m-private\.pages"/i);
  expect(refusals.join('\n')).toMatch(/permissions violation for subscription to "_INBOX\.h1\.>"/i);

  const source = await connectAs('h1');
  const creditRefusal = firstError(source);
  source.publish(h1toH2.credit, Buffer.from('{"grantedSeq":1e9,"appliedSeq":1e9}'));
  expect(await creditRefusal).toMatch('PERMISSIONS_VIOLATION publish ferry.h1.h2.m-private.credit');
});

test('the destination answers the source through the source inbox, and the source reads its credit', async () => {
  const subjects = migrationSubjects('h1', 'h2', 'm-ok');
  const destination = await connectAs('h2');
  destination.subscribe(subjects.control, { callback: (_err, msg) => msg.respond(Buffer.from('{"ok":true}')) });
  await destination.flush();
  const source = await connectAs('h1');
  const credit = watch(source, subjects.credit);
  await source.flush();

  const reply = await source.request(subjects.control, Buffer.from('{"type":"sync"}'), { timeout: 5_000 });
  expect(Buffer.from(reply.data).toString('utf8')).toBe('{"ok":true}');
  const granted = credit.next();
  destination.publish(subjects.credit, Buffer.from('{"grantedSeq":8,"appliedSeq":0}'));
  expect(await granted).toBe('{"grantedSeq":8,"appliedSeq":0}');
});

test('a host added by a later start of a running nats-server gets its user without a restart', async () => {
  const stateDir = makeTestStateDir();
  const credentialsDir = path.join(stateDir, 'credentials');
  const port = await pickFreePort();
  // h2's file exists from the start, as on a host that is set up before the server knows it.
  ensureNatsCredentials(credentialsDir, ['h2']);
  const start = (hosts: string[]) =>
    startNatsServer({
      stateDir,
      port,
      detached: false,
      users: hostNatsUsers(ensureNatsCredentials(credentialsDir, hosts)),
    });
  try {
    const first = await start(['h1']);
    const url = first.url;
    const asHost = (hostId: string) =>
      connectNats({ url, credentialsFile: path.join(credentialsDir, `${hostId}.json`) }, hostId, `test-${hostId}`);
    const h1 = await asHost('h1');
    connections.push(h1);
    await expect(asHost('h2')).rejects.toThrow(/Authorization Violation/i);

    const again = await start(['h1', 'h2']);
    expect(again.state).toBe('already-running');
    expect(again.pid).toBe(first.pid);
    const h2 = await asHost('h2');
    connections.push(h2);
    expect(h1.isClosed()).toBe(false);
  } finally {
    await stopNatsServer({ stateDir, stopGraceMs: 2_000 });
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
});

describe('TLS on the client connections', () => {
  const openssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  let dir: string;
  let nats: TestNats | undefined;

  beforeAll(async () => {
    if (!openssl) return;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-tls-'));
    const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
    run(
      ...['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem'],
      ...['-days', '1', '-subj', '/CN=ferry test CA'],
    );
    run(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'server.key',
      '-out',
      'server.csr',
      '-subj',
      '/CN=127.0.0.1',
    );
    fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName = IP:127.0.0.1, DNS:localhost\n');
    run(
      ...['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial'],
      ...['-out', 'server.pem', '-days', '1', '-extfile', 'san.ext'],
    );
    nats = await startTestNats({
      hosts: ['h1'],
      tls: { certFile: path.join(dir, 'server.pem'), keyFile: path.join(dir, 'server.key') },
    });
  });

  afterAll(async () => {
    await nats?.stop();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  (openssl ? test : test.skip)(
    'a host that trusts the CA connects over TLS; one that does not is refused',
    async () => {
      if (nats?.credentialsDir === undefined) throw new Error('no TLS nats-server');
      const credentialsFile = path.join(nats.credentialsDir, 'h1.json');
      const trusted = await connectNats(
        { url: nats.url, credentialsFile, tlsCaFile: path.join(dir, 'ca.pem') },
        'h1',
        'test-tls',
      );
      connections.push(trusted);
      expect(trusted.info?.tls_required).toBe(true);
      const subjects = migrationSubjects('h2', 'h1', 'm-tls');
      const pages = watch(trusted, subjects.pages);
      await trusted.flush();
      const { admin } = nats;
      if (admin === undefined) throw new Error('the TLS nats-server has no admin');
      const sender = await connect({
        servers: nats.url,
        user: admin.user,
        pass: admin.password,
        tls: { caFile: path.join(dir, 'ca.pem') },
      });
      connections.push(sender);
      const arrived = pages.next();
      sender.publish(subjects.pages, Buffer.from('batch over TLS'));
      expect(await arrived).toBe('batch over TLS');

      const untrusted = await connectNats({ url: nats.url, credentialsFile }, 'h1', 'test-no-ca').then(
        async (nc) => {
          await nc.close();
          return undefined;
        },
        (err: Error) => err,
      );
      expect(untrusted?.message).toMatch(/certificate/);
    },
  );
});

describe("SeaweedFS's own ports", () => {
  let seaweed: TestSeaweed;

  beforeAll(async () => {
    seaweed = await startTestSeaweed();
  });

  afterAll(async () => {
    await seaweed?.stop();
  });

  test('refuse an unsigned write or read straight to the volume server and the filer, while S3 works', async () => {
    const bucket = 'ferry-acl';
    await createBucket(seaweed, bucket);
    const s3 = new S3Client({
      endpoint: seaweed.endpoint,
      region: seaweed.region,
      credentials: { accessKeyId: seaweed.accessKeyId, secretAccessKey: seaweed.secretAccessKey },
      forcePathStyle: true,
    });
    try {
      const page = Buffer.alloc(64 * 1024, 7);
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'page', Body: page }));
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'page' }));
      expect(Buffer.from((await got.Body?.transformToByteArray()) ?? []).equals(page)).toBe(true);
    } finally {
      s3.destroy();
    }
    const ports = readPortsRecord(seaweedPaths(seaweed.stateDir).portsFile);
    if (ports === undefined) throw new Error('the test SeaweedFS recorded no ports');

    const assign = (await (await fetch(`http://127.0.0.1:${ports.master}/dir/assign`)).json()) as {
      fid: string;
      url: string;
      auth?: string;
    };
    expect(assign.auth).toBeUndefined();
    const form = (): FormData => {
      const body = new FormData();
      body.append('file', new Blob([Buffer.from('forged page')]), 'page');
      return body;
    };
    const write = await fetch(`http://${assign.url}/${assign.fid}`, { method: 'POST', body: form() });
    expect(write.status).toBe(401);
    const read = await fetch(`http://${assign.url}/${assign.fid}`);
    expect(read.status).toBe(401);
    const filer = await fetch(`http://127.0.0.1:${ports.filer}/buckets/${bucket}/forged`, {
      method: 'POST',
      body: form(),
    });
    expect(filer.ok).toBe(false);
  });

  test("refuse a gRPC client without the server's certificate: weed upload through the master fails", async () => {
    const ports = readPortsRecord(seaweedPaths(seaweed.stateDir).portsFile);
    if (ports === undefined) throw new Error('the test SeaweedFS recorded no ports');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-weed-upload-'));
    try {
      fs.writeFileSync(path.join(dir, 'forged'), 'forged page');
      // Run from an empty folder, so that weed finds no security.toml to borrow.
      const upload = spawnSync(
        resolveBinary('weed'),
        ['upload', `-master=127.0.0.1:${ports.master}.${ports.masterGrpc}`, 'forged'],
        {
          cwd: dir,
          encoding: 'utf8',
          timeout: 30_000,
        },
      );
      expect(upload.status).not.toBe(0);
      expect(upload.stdout).toMatch(/get master .* configuration: rpc error/);
      expect(upload.stdout).not.toContain('"fid"');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
