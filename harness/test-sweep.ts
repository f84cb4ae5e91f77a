/**
 * Clean-up after test runs that died before their `afterAll`: finds the temp state dirs that
 * harness/test-services.ts creates, and for each whose owning process is gone, kills the services
 * recorded in it (by pid, after checking the pid still runs the recorded binary), removes the
 * network namespaces and links it records (infra/netns.ts) and the sockets SeaweedFS leaves in /tmp, and
 * deletes it.
 * Dirs of a live owner, such as a test run going on in another shell, are left alone.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isProcessAlive, isRecordAlive, readPidRecord } from '../infra/service-files';
import { killAllWorkers, stopAllVmms } from '../infra/ferry-cluster';
import { removeRecordedNetwork } from '../infra/netns';
import { removeGrpcSockets, SEAWEED_SERVICE_NAME } from '../infra/seaweedfs-files';

/** Name prefix of test state dirs under the OS temp dir. */
export const TEST_STATE_PREFIX = 'ferry-test-';
/** File in a test state dir holding the pid of the process that created it. */
export const TEST_OWNER_FILE = 'owner.pid';
/** A dir without owner file younger than this may be in the middle of being created (ms). */
const UNOWNED_GRACE_MS = 60_000;

function ownerState(dir: string): 'alive' | 'dead' | 'unknown' {
  try {
    const owner = Number(fs.readFileSync(path.join(dir, TEST_OWNER_FILE), 'utf8').trim());
    return Number.isInteger(owner) && owner > 0 && isProcessAlive(owner) ? 'alive' : 'dead';
  } catch {
    return 'unknown';
  }
}

function isServiceAlive(dir: string, name: string): boolean {
  const record = readPidRecord(path.join(dir, name, `${name}.pid`));
  return record !== undefined && isRecordAlive(record);
}

function killRecordedServices(dir: string): string[] {
  const killed: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const record = readPidRecord(path.join(dir, entry.name, `${entry.name}.pid`));
    if (record === undefined || !isRecordAlive(record)) continue;
    try {
      process.kill(record.pid, 'SIGKILL');
      killed.push(`killed leftover test ${entry.name} (pid ${record.pid}, state ${dir})`);
    } catch {
      // Gone in the meantime: nothing left to do.
    }
  }
  return killed;
}

/**
 * Kills the services of orphaned test state dirs and deletes those dirs. Returns one line per
 * service killed (empty when nothing was left behind). Never throws for a dir it cannot read.
 */
export function sweepTestServices(tmpDir: string = os.tmpdir()): string[] {
  const messages: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(tmpDir).filter((name) => name.startsWith(TEST_STATE_PREFIX));
  } catch {
    return messages;
  }
  for (const name of names) {
    const dir = path.join(tmpDir, name);
    try {
      const owner = ownerState(dir);
      if (owner === 'alive') continue;
      if (owner === 'unknown' && Date.now() - fs.statSync(dir).mtimeMs < UNOWNED_GRACE_MS) continue;
      const seaweedWasAlive = isServiceAlive(dir, SEAWEED_SERVICE_NAME);
      messages.push(...killRecordedServices(dir), ...killAllWorkers(dir), ...stopAllVmms(dir));
      removeGrpcSockets(dir, { evenIfListening: seaweedWasAlive });
      // The dir holds the only record of the test's namespaces and links (infra/netns.ts): if they
      // cannot be removed now, it stays for the next sweep.
      try {
        messages.push(...removeRecordedNetwork(dir));
      } catch (err) {
        messages.push((err as Error).message);
        continue;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // Another sweeper or the owner removed it first.
    }
  }
  return messages;
}
