/**
 * The built-in methods of a VMM process's control channel. Each takes untrusted JSON params and
 * throws VmmParamsError when they are malformed.
 */
import { VmmParamsError } from './errors';
import type { GuestReport, HypervisorEvents, VmmContext, VmmHandler } from './extensions';
import type { GuestHold } from './guest-run';
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
  /** Whether this VMM owns the VM (only then may its guest run; see guest-run.ts). */
  owner: boolean;
  /** Who holds the guest paused now (`switchover`, `verify`, `dumpMemory`, `pause`, …). */
  holds: string[];
  /** Which hypervisor runs the guest. */
  driver: 'simulated' | 'qemu';
  /** The guest program's last heartbeat (QEMU guests). */
  guest?: GuestReport;
  /** The QEMU process's pid (QEMU guests). */
  hypervisorPid?: number;
  /** QEMU's last STOP and RESUME events (QEMU guests): the switchover's downtime as QEMU saw it. */
  hypervisorEvents?: HypervisorEvents;
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
 * setWorkload {workload}, digest, verify and dumpMemory {path} (both hold the guest paused while
 * they read memory), and shutdown (which answers, then calls `hooks.shutdown` once the answer is
 * on its way). pause, resume and setThrottle answer with the vCPU's stats.
 *
 * `pause` takes the operator's hold on the guest (one, however often asked) and `resume` releases
 * it: the guest runs again only if no other holder (a switchover's stun) holds it too. `resume`
 * throws VmmNotOwnerError on a VMM that does not own its VM (see guest-run.ts).
 */
export function createBuiltinMethods(
  ctx: VmmContext,
  hooks: { pid: number; shutdown(): void },
): Record<(typeof BUILTIN_METHODS)[number], VmmHandler> {
  const { memory, vcpu, run } = ctx;
  // A running vCPU rewrites pages while they are read, so checks and dumps hold it paused (as
  // QEMU's dump-guest-memory does) to see one consistent memory. Their own hold only: a stun taken
  // meanwhile outlasts them.
  const whilePaused = async <T>(holder: string, work: () => Promise<T>): Promise<T> => {
    const hold = await run.hold(holder);
    try {
      return await work();
    } finally {
      hold.release();
    }
  };
  let operatorHold: Promise<GuestHold> | undefined;
  return {
    status: async (): Promise<VmmStatus> => {
      const guest = ctx.guestReport?.();
      return {
        vmId: ctx.vmId,
        pid: hooks.pid,
        pageCount: memory.pageCount,
        mode: ctx.mode,
        vcpu: vcpu.stats(),
        workload: vcpu.workload(),
        owner: run.owner,
        holds: run.holders(),
        driver: ctx.devices ? 'qemu' : 'simulated',
        ...(guest ? { guest } : {}),
        ...(ctx.hypervisorPid !== undefined ? { hypervisorPid: ctx.hypervisorPid } : {}),
        ...(ctx.hypervisorEvents ? { hypervisorEvents: ctx.hypervisorEvents() } : {}),
      };
    },
    pause: async (): Promise<VcpuStats> => {
      operatorHold ??= run.hold('pause');
      operatorHold.catch(() => (operatorHold = undefined));
      await operatorHold;
      return vcpu.stats();
    },
    resume: async (): Promise<VcpuStats> => {
      run.assertOwner('resume the guest');
      const hold = operatorHold;
      operatorHold = undefined;
      (await hold?.catch(() => undefined))?.release();
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
      // A guest that checks its own memory (QEMU's guest program) is asked; the simulated guest's
      // pages check themselves, read here while it is held paused.
      ctx.verifyGuest?.() ??
      whilePaused('verify', async () => {
        const { badPages, checked } = await memory.verifyAll();
        return { badPages: badPages.length, firstBadPages: badPages.slice(0, 16), checked };
      }),
    dumpMemory: async (params): Promise<{ path: string; bytes: number }> => {
      const path = paramsObject(params, 'dumpMemory')['path'];
      if (typeof path !== 'string' || path === '') {
        throw new VmmParamsError('path', `dumpMemory path must be a non-empty string, got ${JSON.stringify(path)}`);
      }
      const at = paramsObject(params, 'dumpMemory')['at'] ?? 'now';
      if (at !== 'now' && at !== 'resume')
        throw new VmmParamsError('at', `dumpMemory at must be now or resume, got ${JSON.stringify(at)}`);
      if (at === 'resume') {
        if (!memory.dumpAtResumeTo)
          throw new VmmParamsError(
            'at',
            'this guest keeps no image of its memory at resume (only a QEMU destination does)',
          );
        return { path, bytes: await memory.dumpAtResumeTo(path) };
      }
      const bytes = await whilePaused('dumpMemory', () => memory.dumpTo(path));
      return { path, bytes };
    },
    shutdown: async (): Promise<{ shuttingDown: true }> => {
      setImmediate(hooks.shutdown);
      return { shuttingDown: true };
    },
  };
}
