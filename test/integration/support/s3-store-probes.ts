/** A VM's memory dumped by its host, for the S3 store's tests. */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { MemoryDumper } from '../../../verification';

/** The memory of `vmId` on `hostId`, dumped into `dir` and read back (the dump is removed). */
export async function dumpMemory(dumper: MemoryDumper, hostId: string, vmId: string, dir: string): Promise<Buffer> {
  const file = path.join(dir, `${vmId}-${hostId}-probe.mem`);
  try {
    await dumper.dumpVmMemory(hostId, vmId, file);
    return await fs.readFile(file);
  } finally {
    await fs.rm(file, { force: true });
  }
}
