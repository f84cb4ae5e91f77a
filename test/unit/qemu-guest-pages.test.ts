/**
 * QemuGuestPages over a real file (what QEMU maps as guest RAM): scans find exactly the pages that
 * changed, the engine's copy is a snapshot, and a destination that applies every page the source
 * sent ends with the same file and the same digest; all of it with the file mapped into the
 * process (ram-map.ts) and with reads and writes, on the calling thread and on scan workers.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PAGE_SIZE_BYTES } from '../../vmm/guest-memory';
import { QemuGuestPages } from '../../vmm/qemu/qemu-guest-pages';
import { napiIncludeDir } from '../../vmm/qemu/ram-map';
import { nextVersion, VERSION_CHANGING } from '../../vmm/qemu/ram-scan';

const PAGES = 1_200; // more than one scan chunk (512 pages)
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-qemu-pages-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let files = 0;
function ramFile(name: string, pages = PAGES): string {
  files += 1;
  const file = path.join(dir, `${files}-${name}`);
  fs.writeFileSync(file, Buffer.alloc(pages * PAGE_SIZE_BYTES));
  return file;
}

/** Writes fresh random bytes over page `index` of `file` (as the guest would) and returns them. */
function guestWrites(file: string, index: number): Buffer {
  const bytes = randomBytes(PAGE_SIZE_BYTES);
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, PAGE_SIZE_BYTES, index * PAGE_SIZE_BYTES);
  } finally {
    fs.closeSync(fd);
  }
  return bytes;
}

function hasGcc(): boolean {
  try {
    execFileSync('gcc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// Where gcc is (every ferry host that runs QEMU guests: infra/qemu/setup-qemu.sh installs it) and
// the running Node's N-API headers (its wheel ships them), the RAM file is mapped, so the fast path
// is the one the QEMU tests exercise.
(hasGcc() && napiIncludeDir() !== undefined ? test : test.skip)(
  'with gcc and N-API headers on the host, the RAM file is mapped into the process',
  () => {
    const pages = new QemuGuestPages(ramFile('mapped.ram'), PAGES, { scanThreads: 0 });
    try {
      expect(pages.ramAccessNote).toBeUndefined();
      expect(pages.ramAccess).toBe('mapped');
    } finally {
      pages.close();
    }
    const unmapped = new QemuGuestPages(ramFile('unmapped.ram'), PAGES, { scanThreads: 0, mapRam: false });
    expect(unmapped.ramAccess).toBe('read-write');
    unmapped.close();
  },
);

test('versions count up from 1 and never take 0 (never written) or the changing mark', () => {
  expect(nextVersion(0)).toBe(1);
  expect(nextVersion(41)).toBe(42);
  expect(nextVersion(VERSION_CHANGING - 1)).toBe(1);
  expect(nextVersion(VERSION_CHANGING)).toBe(1);
});

describe.each([
  [0, true],
  [2, true],
  [0, false],
  [2, false],
])('with %i scan threads, mapped where possible: %s', (scanThreads, mapRam) => {
  test('the first scan lists every page the guest wrote, at version 1, and leaves zero pages out', async () => {
    const file = ramFile('first-scan.ram');
    const written = [0, 3, 511, 512, 1_199];
    for (const i of written) guestWrites(file, i);
    const pages = new QemuGuestPages(file, PAGES, { scanThreads, mapRam });
    try {
      expect(Array.from(await pages.collectDirty())).toEqual(written);
      for (const i of written) expect(pages.meta[i * 2]).toBe(1);
      expect(pages.meta[1 * 2]).toBe(0);
      expect(pages.isZeroPage(1)).toBe(true);
      expect(pages.isZeroPage(3)).toBe(false);
      expect(await pages.collectDirty()).toHaveLength(0);
    } finally {
      pages.close();
    }
  });

  test('later scans find exactly the rewritten pages, raise only their versions, and pending counts do not forget them', async () => {
    const file = ramFile('later-scan.ram');
    for (let i = 0; i < PAGES; i += 7) guestWrites(file, i);
    const pages = new QemuGuestPages(file, PAGES, { scanThreads, mapRam });
    try {
      await pages.collectDirty();
      const before = Uint32Array.from(pages.meta);
      guestWrites(file, 7);
      guestWrites(file, 700);
      guestWrites(file, 701); // a zero page until now
      expect(await pages.pendingDirtyCount()).toBe(3);
      expect(await pages.pendingDirtyCount()).toBe(3);
      expect(Array.from(await pages.collectDirty())).toEqual([7, 700, 701]);
      expect(pages.meta[7 * 2]).toBe(2);
      expect(pages.meta[700 * 2]).toBe(2);
      expect(pages.meta[701 * 2]).toBe(1);
      for (let i = 0; i < PAGES; i += 1) if (![7, 700, 701].includes(i)) expect(pages.meta[i * 2]).toBe(before[i * 2]);
      expect(await pages.pendingDirtyCount()).toBe(0);
    } finally {
      pages.close();
    }
  });

  test("the engine's copy of a page is the scan's snapshot: a guest write after the scan changes it only at the next scan", async () => {
    const file = ramFile('snapshot.ram');
    const first = guestWrites(file, 42);
    const pages = new QemuGuestPages(file, PAGES, { scanThreads, mapRam });
    try {
      await pages.collectDirty();
      const second = guestWrites(file, 42);
      expect(pages.page(42).equals(first)).toBe(true);
      expect(Array.from(await pages.collectDirty())).toEqual([42]);
      expect(pages.page(42).equals(second)).toBe(true);
      expect(pages.meta[42 * 2]).toBe(2);
    } finally {
      pages.close();
    }
  });

  test('a destination that applies every page the source sent, with its version, holds the same file and digest', async () => {
    const sourceFile = ramFile('source.ram');
    const destinationFile = ramFile('destination.ram');
    for (let i = 0; i < PAGES; i += 3) guestWrites(sourceFile, i);
    const source = new QemuGuestPages(sourceFile, PAGES, { scanThreads, mapRam });
    const destination = new QemuGuestPages(destinationFile, PAGES, { scanThreads, mapRam });
    try {
      const send = (indexes: Uint32Array): void => {
        for (const i of indexes)
          expect(destination.applyPage(i, Buffer.from(source.page(i)), source.meta[i * 2] as number)).toBe(true);
      };
      send(await source.collectDirty());
      guestWrites(sourceFile, 3);
      guestWrites(sourceFile, 1_000);
      const changed = await source.collectDirty();
      expect(Array.from(changed)).toEqual([3, 1_000]);
      expect(destination.digest()).not.toBe(source.digest());
      send(changed);
      expect(destination.digest()).toBe(source.digest());
      expect(fs.readFileSync(destinationFile).equals(fs.readFileSync(sourceFile))).toBe(true);
      expect((await destination.verifyAll()).badPages).toEqual([]);
      // The file changed behind the engine's back: verify names the page.
      guestWrites(destinationFile, 5);
      expect((await destination.verifyAll()).badPages).toEqual([5]);
    } finally {
      source.close();
      destination.close();
    }
  });

  test("a versioned copy (a store's uploads) is the scan's snapshot with its version, and torn while a scan rewrites the page", async () => {
    const file = ramFile('versioned-copy.ram');
    const written = guestWrites(file, 7);
    const pages = new QemuGuestPages(file, PAGES, { scanThreads, mapRam });
    try {
      await pages.collectDirty();
      const target = Buffer.alloc(PAGE_SIZE_BYTES);
      expect(pages.copyVersionedPage(7, target)).toBe(1);
      expect(target.equals(written)).toBe(true);
      expect(pages.copyVersionedPage(8, target)).toBe(0);
      // A scan marks the version word while it rewrites the page's shadow copy.
      Atomics.store(pages.meta, 7 * 2, VERSION_CHANGING);
      expect(pages.copyVersionedPage(7, target)).toBe(-1);
    } finally {
      pages.close();
    }
  });

  test('a destination faulted in before pages arrive still holds a zero guest, and takes pages as before', async () => {
    const file = ramFile('prefault.ram');
    const pages = new QemuGuestPages(file, PAGES, { scanThreads, mapRam });
    try {
      pages.prefault();
      expect(fs.readFileSync(file).equals(Buffer.alloc(PAGES * PAGE_SIZE_BYTES))).toBe(true);
      expect(await pages.collectDirty()).toHaveLength(0);
      const page = randomBytes(PAGE_SIZE_BYTES);
      pages.applyPage(600, page, 4);
      expect(
        fs
          .readFileSync(file)
          .subarray(600 * PAGE_SIZE_BYTES, 601 * PAGE_SIZE_BYTES)
          .equals(page),
      ).toBe(true);
      expect(pages.meta[600 * 2]).toBe(4);
    } finally {
      pages.close();
    }
  });

  test('a RAM file smaller than the guest, and page indexes out of range, are refused', async () => {
    const file = ramFile('small.ram', 10);
    expect(() => new QemuGuestPages(file, 11, { scanThreads, mapRam })).toThrow(
      /holds 40960 bytes, less than 11 pages/,
    );
    const pages = new QemuGuestPages(file, 10, { scanThreads, mapRam });
    try {
      expect(() => pages.page(10)).toThrow(/page index must be an integer in \[0, 10\), got 10/);
      expect(() => pages.applyPage(0, Buffer.alloc(10), 1)).toThrow(/4096 bytes, got 10/);
    } finally {
      pages.close();
    }
  });
});
