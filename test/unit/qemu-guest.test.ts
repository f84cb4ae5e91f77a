/**
 * The host-side choices of the QEMU driver that need no QEMU: the accelerator a host asks for, and
 * the sweep of state folders that VMMs killed with SIGKILL left behind.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { qemuAccelFromEnv, sweepStateDirs } from '../../vmm/qemu/qemu-guest';

test('the accelerator is tcg unless the host asks for kvm, and anything else is refused by name', () => {
  expect(qemuAccelFromEnv({})).toBe('tcg');
  expect(qemuAccelFromEnv({ FERRY_QEMU_ACCEL: 'kvm' })).toBe('kvm');
  expect(() => qemuAccelFromEnv({ FERRY_QEMU_ACCEL: 'hvf' })).toThrow('FERRY_QEMU_ACCEL must be tcg or kvm, got "hvf"');
});

test('the sweep removes state folders whose QEMU is gone, and keeps those of a live QEMU or of one starting', () => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-sweep-'));
  try {
    const folder = (name: string, pid?: number): string => {
      const dir = path.join(parent, `ferry-qemu-${name}`);
      fs.mkdirSync(dir);
      if (pid !== undefined) fs.writeFileSync(path.join(dir, 'qemu.pid'), `${pid}\n`);
      return dir;
    };
    // A pid above the kernel's pid_max names no process.
    const dead = folder('dead-a1', 4_194_305);
    const live = folder('live-b2', process.pid);
    const starting = folder('starting-c3');
    const other = path.join(parent, 'not-ferry');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'qemu.pid'), '4194305\n');
    sweepStateDirs(parent);
    expect(fs.existsSync(dead)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    expect(fs.existsSync(starting)).toBe(true);
    expect(fs.existsSync(other)).toBe(true);
  } finally {
    fs.rmSync(parent, { recursive: true, force: true });
  }
});
