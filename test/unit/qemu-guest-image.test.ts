import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cachedGuestImage, guestKernelCommandLine, maxGuestFillMib } from '../../infra/qemu/guest-image';
import { encodeNewcArchive } from '../../infra/qemu/newc-archive';
import { qemuArgs } from '../../vmm/qemu/qemu-command-line';

interface Member {
  name: string;
  mode: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Buffer;
}

/** Reads a newc archive back, checking magic and 4-byte alignment as the kernel does. */
function decodeNewc(archive: Buffer): Member[] {
  const members: Member[] = [];
  let offset = 0;
  for (;;) {
    expect(offset % 4).toBe(0);
    const header = archive.toString('ascii', offset, offset + 110);
    expect(header.slice(0, 6)).toBe('070701');
    const field = (i: number): number => parseInt(header.slice(6 + i * 8, 14 + i * 8), 16);
    const nameSize = field(11);
    const fileSize = field(6);
    const name = archive.toString('ascii', offset + 110, offset + 110 + nameSize - 1);
    let dataStart = offset + 110 + nameSize;
    dataStart += (4 - (dataStart % 4)) % 4;
    if (name === 'TRAILER!!!') {
      expect(dataStart).toBe(archive.length);
      return members;
    }
    members.push({
      name,
      mode: field(1),
      rdevMajor: field(9),
      rdevMinor: field(10),
      data: archive.subarray(dataStart, dataStart + fileSize),
    });
    offset = dataStart + fileSize + ((4 - (fileSize % 4)) % 4);
  }
}

describe('guest image', () => {
  it('writes a newc archive the kernel can unpack: files, directories, symlinks and /dev/console', () => {
    const archive = encodeNewcArchive([
      { type: 'dir', path: 'dev' },
      { type: 'char-device', path: 'dev/console', major: 5, minor: 1 },
      { type: 'file', path: 'init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
      { type: 'symlink', path: 'sh', target: 'busybox' },
    ]);
    expect(decodeNewc(archive)).toEqual([
      { name: 'dev', mode: 0o040755, rdevMajor: 0, rdevMinor: 0, data: Buffer.alloc(0) },
      { name: 'dev/console', mode: 0o020600, rdevMajor: 5, rdevMinor: 1, data: Buffer.alloc(0) },
      { name: 'init', mode: 0o100755, rdevMajor: 0, rdevMinor: 0, data: Buffer.from('#!/bin/sh\n') },
      { name: 'sh', mode: 0o120777, rdevMajor: 0, rdevMinor: 0, data: Buffer.from('busybox') },
    ]);
  });

  it('gives the same bytes for the same entries, so the cached image is reproducible', () => {
    const entries = [{ type: 'file' as const, path: 'a', data: Buffer.from('x') }];
    expect(encodeNewcArchive(entries).equals(encodeNewcArchive(entries))).toBe(true);
  });

  it('refuses archive paths that are absolute or climb out', () => {
    expect(() => encodeNewcArchive([{ type: 'dir', path: '/etc' }])).toThrow(/relative/);
    expect(() => encodeNewcArchive([{ type: 'dir', path: 'a/../../b' }])).toThrow(/relative/);
  });

  it('leaves the guest kernel room: at most 48 MiB of fill in 128 MiB, 832 in 1 GiB, none in 64 MiB', () => {
    expect([maxGuestFillMib(128), maxGuestFillMib(1024), maxGuestFillMib(64)]).toEqual([48, 832, 0]);
  });

  it('puts the workload on the kernel command line and refuses a hot set larger than the fill', () => {
    expect(guestKernelCommandLine({ fillMib: 48, hotMib: 16, rateMbPerSec: 50, verifyMbPerSec: 64 })).toBe(
      'console=ttyS0 panic=-1 loglevel=4 ferry.fill_mib=48 ferry.hot_mib=16 ferry.rate_mbps=50 ferry.verify_mbps=64',
    );
    expect(() => guestKernelCommandLine({ fillMib: 8, hotMib: 16 })).toThrow(
      'hotMib must not exceed fillMib, got 16 > 8',
    );
    expect(() => guestKernelCommandLine({ rateMbPerSec: -1 })).toThrow('rateMbPerSec must be a non-negative integer');
  });
});

describe('a cached guest image found by its key (a destination starts what its source runs)', () => {
  const kernel = { name: 'linux-image-6.1.0-57-amd64', version: '6.1.192-3' };
  const busybox = { name: 'busybox-static', version: '1:1.35.0-4+deb12u1+b1' };
  let cacheDir: string;
  beforeAll(() => {
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-guest-cache-'));
    const dir = path.join(cacheDir, '0123456789abcdef');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'vmlinuz'), 'kernel');
    fs.writeFileSync(path.join(dir, 'initrd.cpio'), 'initrd');
    fs.writeFileSync(path.join(dir, 'image.json'), JSON.stringify({ kernel, busybox, gcc: '12.2.0' }));
    fs.mkdirSync(path.join(cacheDir, 'fedcba9876543210'));
  });
  afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

  it('is the image of that folder, with its packages', () => {
    expect(cachedGuestImage('0123456789abcdef', { cacheDir })).toEqual({
      kernelPath: path.join(cacheDir, '0123456789abcdef', 'vmlinuz'),
      initrdPath: path.join(cacheDir, '0123456789abcdef', 'initrd.cpio'),
      key: '0123456789abcdef',
      kernel,
      busybox,
    });
  });

  it('is none for a key this host has not built, an unfinished folder, or anything that is not a key', () => {
    expect(cachedGuestImage('1111111111111111', { cacheDir })).toBeUndefined();
    expect(cachedGuestImage('fedcba9876543210', { cacheDir })).toBeUndefined();
    for (const key of ['../0123456789abcdef', '0123456789ABCDEF', '0123456789abcde', '', '/etc'])
      expect(cachedGuestImage(key, { cacheDir })).toBeUndefined();
  });
});

describe('QEMU command line', () => {
  const options = {
    vmId: 'vm1',
    stateDir: '/tmp/s',
    memoryMib: 128,
    kernelPath: '/k',
    initrdPath: '/i',
    kernelCommandLine: 'console=ttyS0',
  };

  it('gives QEMU no network card, no display and only unix sockets', () => {
    const args = qemuArgs(options, '/dev/shm/ferry-0/vm1-x.ram').join(' ');
    expect(args).toContain('-nodefaults');
    expect(args).toContain('-nic none');
    expect(args).toContain('-display none');
    expect(args).toContain('-qmp unix:/tmp/s/qmp.sock,server=on,wait=off');
    expect(args).not.toMatch(/tcp:|vnc|-netdev|hostfwd/);
    expect(args).toContain('memory-backend-file,id=ram0,size=128M,mem-path=/dev/shm/ferry-0/vm1-x.ram,share=on');
  });

  it('starts a destination waiting for its device state and paused after it', () => {
    expect(qemuArgs({ ...options, incoming: true }, '/r').slice(-3)).toEqual(['-incoming', 'defer', '-S']);
    expect(qemuArgs(options, '/r')).not.toContain('-incoming');
    expect(qemuArgs(options, '/r')).not.toContain('-S');
  });

  it('refuses a path with a comma, which QEMU would split', () => {
    expect(() => qemuArgs({ ...options, stateDir: '/tmp/a,b' }, '/r')).toThrow("QEMU paths must not contain ','");
  });
});
