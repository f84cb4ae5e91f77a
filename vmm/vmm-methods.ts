/**
 * The built-in methods of a VMM process's control channel. Each takes untrusted JSON params and
 * throws VmmParamsError when they are malformed.
 */
import { promises as fs } from 'node:fs';
import { VmmParamsError } from './errors';
import type { VmmContext, VmmHandler } from './extensions';
import type { VcpuStats } from './vcpu';
import { resolveWorkload } from './workload';
import type { Workload } from './workload';

/** Answer of `status`. */
export interface VmmStatus {
  vmId: string;
  pid: number;
  pageCount: number;
  mode: 'run' | 'incoming';
  vcpu: VcpuStats;
  workload: Workload;
}

/** Answer of `verify`: how many pages fail their self-check, the first few of them, pages checked. */
export interface VmmVerifyResult {
  badPages: number;
  firstBadPages: number[];
  checked: number;
}

/** Names of the built-in methods; extensions may not reuse them. */
export const BUILTIN_METHODS = [
  'status',
  'pause',
  'resume',
  'setThrottle',
  'setWorkload',
  'digest',
  'verify',
  'dumpMemory',
  'shutdown',
] as const;

function paramsObject(params: unknown, method: string): Record<string, unknown> {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new VmmParamsError('params', `${method} takes an object of params, got ${JSON.stringify(params)}`);
  }
  return params as Record<string, unknown>;
}

/**
 * Builds the built-in methods over `ctx`: status, pause, resume, setThrottle {percent},
 * setWorkload {workload}, digest, verify and dumpMemory {path} (both pause a running vCPU while
 * they read memory), and shutdown (which answers, then
 * calls `hooks.shutdown` once the answer is on its way). pause, resume and setThrottle answer
 * with the vCPU's stats.
 */
export function createBuiltinMethods(
  ctx: VmmContext,
  hooks: { pid: number; shutdown(): void },
): Record<(typeof BUILTIN_METHODS)[number], VmmHandler> {
  const { memory, vcpu } = ctx;
  // A running vCPU rewrites pages while they are read, so checks and dumps briefly pause it (as
  // QEMU's dump-guest-memory does) to see one consistent memory, then let it run on.
  const whilePaused = async <T>(work: () => Promise<T>): Promise<T> => {
    const wasRunning = vcpu.stats().state === 'running';
    if (wasRunning) await vcpu.pause();
    try {
      return await work();
    } finally {
      if (wasRunning) vcpu.resume();
    }
  };
  return {
    status: async (): Promise<VmmStatus> => ({
      vmId: ctx.vmId,
      pid: hooks.pid,
      pageCount: memory.pageCount,
      mode: ctx.mode,
      vcpu: vcpu.stats(),
      workload: vcpu.workload(),
    }),
    pause: async (): Promise<VcpuStats> => {
      await vcpu.pause();
      return vcpu.stats();
    },
    resume: async (): Promise<VcpuStats> => {
      vcpu.resume();
      return vcpu.stats();
    },
    setThrottle: async (params): Promise<VcpuStats> => {
      vcpu.setThrottle(paramsObject(params, 'setThrottle')['percent'] as number);
      return vcpu.stats();
    },
    setWorkload: async (params): Promise<{ workload: Workload }> => {
      const workload = resolveWorkload(paramsObject(params, 'setWorkload')['workload']);
      vcpu.setWorkload(workload);
      ctx.log(`workload set to ${JSON.stringify(workload)}`);
      return { workload };
    },
    digest: async (): Promise<{ digest: string }> => ({ digest: memory.digest() }),
    verify: async (): Promise<VmmVerifyResult> =>
      whilePaused(async () => {
        const { badPages, checked } = memory.verifyAll();
        return { badPages: badPages.length, firstBadPages: badPages.slice(0, 16), checked };
      }),
    dumpMemory: async (params): Promise<{ path: string; bytes: number }> => {
      const path = paramsObject(params, 'dumpMemory')['path'];
      if (typeof path !== 'string' || path === '') {
        throw new VmmParamsError('path', `dumpMemory path must be a non-empty string, got ${JSON.stringify(path)}`);
      }
      await whilePaused(() => fs.writeFile(path, memory.bytes));
      return { path, bytes: memory.bytes.length };
    },
    shutdown: async (): Promise<{ shuttingDown: true }> => {
      setImmediate(hooks.shutdown);
      return { shuttingDown: true };
    },
  };
}
