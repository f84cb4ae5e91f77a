import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { TestSeaweed } from '../../harness';
import { makeTestStateDir, pickFreeSeaweedPorts, startTestSeaweed, sweepTestServices } from '../../harness';
import type { SeaweedPorts } from '../../infra';
import {
  grpcSocketPaths,
  isPortAnswering,
  SEAWEED_SERVICE_NAME,
  seaweedPaths,
  serviceStatus,
  startSeaweedServer,
  stopSeaweedServer,
} from '../../infra';
import { isProcessAlive, waitForExit } from '../../infra/service-files';

jest.setTimeout(60_000);

/** CRC32C (Castagnoli, reflected polynomial 0x82F63B78), base64 as S3 reports it. */
function crc32cBase64(data: Uint8Array): string {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  const out = Buffer.alloc(4);
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return out.toString('base64');
}

function client(seaweed: TestSeaweed, secretAccessKey = seaweed.secretAccessKey, accessKeyId = seaweed.accessKeyId) {
  return new S3Client({
    endpoint: seaweed.endpoint,
    region: seaweed.region,
    credentials: { accessKeyId, secretAccessKey },
    forcePathStyle: true,
    maxAttempts: 1,
  });
}

/** Status code of an unsigned GET. */
function anonymousGet(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (response) => {
        response.resume();
        response.once('end', () => resolve(response.statusCode ?? 0));
      })
      .once('error', reject);
  });
}

/** Where fd `fd` of process `pid` points, or undefined if the process closed it since it was listed. */
function fdTarget(pid: number, fd: string): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: 'utf8' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * The TCP/UDP sockets process `pid` owns, from /proc/<pid>/fd and the kernel's socket tables.
 * The process keeps running meanwhile: an fd it closes between the listing and the readlink (a
 * connection, a file) is skipped, since the sockets it listens on stay open.
 */
function socketsOf(pid: number): { table: string; local: string; state: string }[] {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    const inode = /^socket:\[(\d+)\]$/.exec(fdTarget(pid, fd) ?? '')?.[1];
    if (inode !== undefined) inodes.add(inode);
  }
  const sockets: { table: string; local: string; state: string }[] = [];
  for (const table of ['tcp', 'tcp6', 'udp', 'udp6']) {
    for (const line of fs.readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length > 9 && inodes.has(fields[9] ?? '')) {
        sockets.push({ table, local: fields[1] ?? '', state: fields[3] ?? '' });
      }
    }
  }
  return sockets;
}

/** `0100007F:1F90` (little-endian IPv4 and hex port, as in /proc/net/tcp) to `127.0.0.1:8080`. */
function decodeAddress(hex: string): string {
  const [ip = '', port = ''] = hex.split(':');
  const octets = (ip.match(/../g) ?? []).reverse().map((octet) => parseInt(octet, 16));
  return `${octets.join('.')}:${parseInt(port, 16)}`;
}

describe('reading the sockets of a live process', () => {
  it('lists the listening socket of a process that opens and closes files all the while', async () => {
    const script = `const server = require('node:net').createServer().listen(0, '127.0.0.1', () => {
      process.stdout.write(server.address().port + '\\n');
      const fs = require('node:fs');
      const churn = () => {
        const fds = Array.from({ length: 50 }, () => fs.openSync('/dev/null', 'r'));
        for (const fd of fds) fs.closeSync(fd);
        setImmediate(churn);
      };
      churn();
    });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const port = await new Promise<number>((resolve) =>
        child.stdout.once('data', (chunk) => resolve(Number(String(chunk)))),
      );
      for (let i = 0; i < 50; i += 1) {
        const listening = socketsOf(child.pid ?? 0).filter((socket) => socket.state === '0A');
        expect(listening.map((socket) => decodeAddress(socket.local))).toEqual([`127.0.0.1:${port}`]);
      }
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('SeaweedFS service', () => {
  const bucket = 'ferry-pages';
  const key = 'migrations/m1/pages/000001';
  const payload = randomBytes(1024 * 1024 + 4096);
  let seaweed: TestSeaweed;
  let s3: S3Client;

  beforeAll(async () => {
    seaweed = await startTestSeaweed();
    s3 = client(seaweed);
  });

  afterAll(async () => {
    s3?.destroy();
    await seaweed?.stop();
  });

  it('opens every port on 127.0.0.1 only, with telemetry off', () => {
    const pid = serviceStatus({ name: SEAWEED_SERVICE_NAME, stateDir: seaweed.stateDir })?.pid ?? 0;
    expect(pid).toBeGreaterThan(0);
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('-master.telemetry=false');
    const sockets = socketsOf(pid);
    const listening = sockets.filter((socket) => socket.table === 'tcp' && socket.state === '0A');
    const ports = JSON.parse(fs.readFileSync(seaweedPaths(seaweed.stateDir).portsFile, 'utf8')) as SeaweedPorts;
    // master, volume, filer and S3, each with its gRPC port; nothing else, nothing on another address.
    expect(listening.map((socket) => decodeAddress(socket.local)).sort()).toEqual(
      Object.values(ports)
        .map((port) => `127.0.0.1:${port}`)
        .sort(),
    );
    expect(sockets.filter((socket) => socket.table !== 'tcp')).toEqual([]);
    expect(sockets.filter((socket) => !decodeAddress(socket.local).startsWith('127.0.0.1:'))).toEqual([]);
  });

  it('stores an object with a CRC32C checksum and returns the same bytes', async () => {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const put = await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: payload, ChecksumAlgorithm: 'CRC32C' }),
    );
    expect(put.ChecksumCRC32C).toBe(crc32cBase64(payload));
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: 'ENABLED' }));
    expect(got.ChecksumCRC32C).toBe(crc32cBase64(payload));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(payload)).toBe(true);
    expect(fs.readdirSync(seaweed.dataDir).length).toBeGreaterThan(0);
  });

  it('refuses a PUT whose CRC32C does not match the body, storing nothing', async () => {
    const attempt = s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: `${key}.bad`, Body: payload, ChecksumCRC32C: 'AAAAAA==' }),
    );
    await expect(attempt).rejects.toMatchObject({ name: 'BadDigest', $metadata: { httpStatusCode: 400 } });
    await expect(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: `${key}.bad` }))).rejects.toMatchObject({
      $metadata: { httpStatusCode: 404 },
    });
  });

  it('refuses a conditional PUT with If-None-Match: * on an existing key (412) and keeps the object', async () => {
    const attempt = s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from('overwrite'), IfNoneMatch: '*' }),
    );
    await expect(attempt).rejects.toMatchObject({ name: 'PreconditionFailed', $metadata: { httpStatusCode: 412 } });
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head.ContentLength).toBe(payload.length);
    const fresh = await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: `${key}.new`, Body: Buffer.from('x'), IfNoneMatch: '*' }),
    );
    expect(fresh.ETag).toBeDefined();
  });

  it('refuses unsigned requests and requests signed with a wrong secret or an unknown key', async () => {
    expect(await anonymousGet(`${seaweed.endpoint}/`)).toBe(403);
    expect(await anonymousGet(`${seaweed.endpoint}/${bucket}/${key}`)).toBe(403);
    const wrongSecret = client(seaweed, 'not-the-secret');
    const unknownKey = client(seaweed, seaweed.secretAccessKey, 'FERRYUNKNOWNKEY0');
    try {
      await expect(wrongSecret.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).rejects.toMatchObject({
        name: 'SignatureDoesNotMatch',
        $metadata: { httpStatusCode: 403 },
      });
      await expect(unknownKey.send(new ListBucketsCommand({}))).rejects.toMatchObject({
        name: 'InvalidAccessKeyId',
        $metadata: { httpStatusCode: 403 },
      });
    } finally {
      wrongSecret.destroy();
      unknownKey.destroy();
    }
  });

  it('serves the object again after a SIGKILL and a restart on the same data', async () => {
    const before = serviceStatus({ name: SEAWEED_SERVICE_NAME, stateDir: seaweed.stateDir })?.pid;
    seaweed.kill('SIGKILL');
    await seaweed.restart();
    const after = serviceStatus({ name: SEAWEED_SERVICE_NAME, stateDir: seaweed.stateDir })?.pid;
    expect(after).toBeDefined();
    expect(after).not.toBe(before);
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).equals(payload)).toBe(true);
  });

  it('reports already running on a second start and hands back the key the server accepts', async () => {
    const before = serviceStatus({ name: SEAWEED_SERVICE_NAME, stateDir: seaweed.stateDir })?.pid;
    const again = await startSeaweedServer({ stateDir: seaweed.stateDir, port: seaweed.port, detached: false });
    expect(again.state).toBe('already-running');
    expect(again.pid).toBe(before);
    expect(again.credentials).toEqual({ accessKeyId: seaweed.accessKeyId, secretAccessKey: seaweed.secretAccessKey });
  });

  it('stop() ends the server and deletes its data and the sockets it left in /tmp', async () => {
    const ref = { name: SEAWEED_SERVICE_NAME, stateDir: seaweed.stateDir };
    const pid = serviceStatus(ref)?.pid ?? 0;
    const ports = JSON.parse(fs.readFileSync(seaweedPaths(seaweed.stateDir).portsFile, 'utf8')) as SeaweedPorts;
    await seaweed.stop();
    expect(pid).toBeGreaterThan(0);
    expect(isProcessAlive(pid)).toBe(false);
    expect(fs.existsSync(seaweed.dataDir)).toBe(false);
    expect(grpcSocketPaths(ports).filter((socket) => fs.existsSync(socket))).toEqual([]);
  });

  it('sweeps a server whose test run died, with the sockets it left in /tmp', async () => {
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.once('exit', resolve));
    const stateDir = makeTestStateDir();
    fs.writeFileSync(path.join(stateDir, 'owner.pid'), `${dead.pid}\n`);
    const { s3: port, ...internalPorts } = await pickFreeSeaweedPorts();
    const started = await startSeaweedServer({ stateDir, port, internalPorts, detached: false });
    try {
      expect(grpcSocketPaths(started.ports).every((socket) => fs.existsSync(socket))).toBe(true);
      const swept = sweepTestServices();
      expect(swept.some((line) => line.includes(stateDir))).toBe(true);
      expect(fs.existsSync(stateDir)).toBe(false);
      // SIGKILL takes effect asynchronously; a many-threaded weed takes a moment to go.
      expect(await waitForExit(started.pid, 5_000)).toBe(true);
      expect(await isPortAnswering(port)).toBe(false);
      expect(grpcSocketPaths(started.ports).filter((socket) => fs.existsSync(socket))).toEqual([]);
    } finally {
      if (fs.existsSync(stateDir)) await stopSeaweedServer({ stateDir, stopGraceMs: 0 });
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
