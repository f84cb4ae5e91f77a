/**
 * After a migration that kept its source stunned (`keepSourceAfterSwitchover`): dumps both
 * memories into `dir`, compares them page by page (see compare-memory.ts) and removes the dumps.
 * A QEMU guest's pages carry no generation: its destination is dumped as it was at resume, and the
 * two images must be equal byte for byte.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { compareMemoryFiles, type MemoryComparison } from './compare-memory';

/** Anything that can write a VM's memory to a file on a host (FerryClient does). */
export interface MemoryDumper {
  dumpVmMemory(hostId: string, vmId: string, path: string, at?: 'now' | 'resume'): Promise<{ state: string }>;
}

/** The comparison plus the source vCPU's state when it was dumped (it must not be running). */
export interface MigratedMemoryCheck extends MemoryComparison {
  sourceState: string;
}

/** Compares `vmId`'s memory on `sourceHost` with its memory on `destinationHost`. */
export async function compareMigratedMemory(
  dumper: MemoryDumper,
  args: { vmId: string; sourceHost: string; destinationHost: string; dir: string; driver?: string },
): Promise<MigratedMemoryCheck> {
  await fs.mkdir(args.dir, { recursive: true });
  const sourceDump = path.join(args.dir, `${args.vmId}-${args.sourceHost}.mem`);
  const destinationDump = path.join(args.dir, `${args.vmId}-${args.destinationHost}.mem`);
  try {
    const source = await dumper.dumpVmMemory(args.sourceHost, args.vmId, sourceDump);
    const exact = args.driver === 'qemu';
    await dumper.dumpVmMemory(args.destinationHost, args.vmId, destinationDump, exact ? 'resume' : 'now');
    return { ...(await compareMemoryFiles(sourceDump, destinationDump, exact)), sourceState: source.state };
  } finally {
    await Promise.all([fs.rm(sourceDump, { force: true }), fs.rm(destinationDump, { force: true })]);
  }
}
