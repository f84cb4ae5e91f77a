/**
 * Fault points of the migration engine: named places in the switchover where a test or the soak
 * can make the VMM process fail on purpose, at a moment no outside signal could hit reliably (the
 * whole switchover takes tens of milliseconds). A fault is armed through the VMM's control socket
 * (`migration.armFault`), fires once, and is then disarmed. The failures are real: the process
 * sends itself SIGKILL or SIGSTOP, or the code really waits or ignores a message.
 *
 * Nothing arms a fault in normal operation; an unarmed point costs one map lookup.
 */
import { FaultSpecError } from './errors';

/** Where a fault can fire. */
export const FAULT_POINTS = [
  /** The source has just stunned the vCPU; nothing of the final round is sent or durable yet. */
  'source.after-stun',
  /** The final pages and the final manifest are fdatasync'ed and the file is complete; the destination is not asked yet. */
  'source.final-pages-durable',
  /** The source has received the destination's answer to the final request. */
  'source.final-reply',
  /** The destination has received the final request and not yet started to finish. */
  'destination.final',
] as const;

/** What a fault does when it fires. */
export const FAULT_ACTIONS = ['sigkill', 'sigstop', 'delay', 'drop'] as const;

/** A point of FAULT_POINTS. */
export type FaultPoint = (typeof FAULT_POINTS)[number];

/** An armed fault: `delay` waits `delayMs`; `drop` makes the code ignore the message it just got. */
export interface FaultSpec {
  point: FaultPoint;
  action: (typeof FAULT_ACTIONS)[number];
  delayMs?: number;
}

/** One VMM's armed faults. */
export class FaultPoints {
  private readonly armed = new Map<FaultPoint, FaultSpec>();

  constructor(private readonly log: (msg: string) => void) {}

  /** Validates and arms `params` (untrusted JSON); replaces a fault armed at the same point. */
  arm(params: unknown): FaultSpec {
    const spec = params as Partial<FaultSpec> | null;
    if (typeof spec !== 'object' || spec === null) throw new FaultSpecError('params', 'must be an object');
    if (!FAULT_POINTS.includes(spec.point as FaultPoint))
      throw new FaultSpecError('point', `must be one of ${FAULT_POINTS.join(', ')}, got ${JSON.stringify(spec.point)}`);
    if (!FAULT_ACTIONS.includes(spec.action as FaultSpec['action']))
      throw new FaultSpecError(
        'action',
        `must be one of ${FAULT_ACTIONS.join(', ')}, got ${JSON.stringify(spec.action)}`,
      );
    if (spec.action === 'delay' && !(typeof spec.delayMs === 'number' && spec.delayMs >= 0 && spec.delayMs <= 600_000))
      throw new FaultSpecError('delayMs', `must be 0-600000 ms for a delay, got ${JSON.stringify(spec.delayMs)}`);
    if (spec.action === 'drop' && spec.point !== 'source.final-reply')
      throw new FaultSpecError('action', `drop applies to source.final-reply only, not ${spec.point}`);
    const armed: FaultSpec = {
      point: spec.point as FaultPoint,
      action: spec.action as FaultSpec['action'],
      ...(spec.delayMs !== undefined ? { delayMs: spec.delayMs } : {}),
    };
    this.armed.set(armed.point, armed);
    return armed;
  }

  /** Whether a fault is armed at `point`. */
  isArmed(point: FaultPoint): boolean {
    return this.armed.has(point);
  }

  /**
   * Fires the fault armed at `point`, if any. Resolves true when the caller must drop what it
   * just received; SIGSTOP resolves once the process is continued.
   */
  async hit(point: FaultPoint): Promise<boolean> {
    const spec = this.armed.get(point);
    if (!spec) return false;
    this.armed.delete(point);
    this.log(`fault ${spec.action} fires at ${point}`);
    switch (spec.action) {
      case 'sigkill':
        process.kill(process.pid, 'SIGKILL');
        // SIGKILL is delivered before the next instruction that matters; never resolve meanwhile.
        return new Promise<boolean>(() => undefined);
      case 'sigstop':
        process.kill(process.pid, 'SIGSTOP');
        return false;
      case 'delay':
        await new Promise((r) => setTimeout(r, spec.delayMs ?? 0));
        return false;
      case 'drop':
        return true;
    }
  }
}
