/**
 * Who may let the guest run, and who holds it still. The vCPU runs only while two things hold: this
 * VMM owns the VM (a created VM does; a migration destination only once it took the ownership
 * epoch; a source no more once the switchover handed ownership over), and nobody holds the guest
 * paused. Pausing is a counted hold: each holder (the switchover's stun, a memory check, a dump, an
 * operator's `pause`) takes its own and releases its own, and releasing one hold never runs a guest
 * another still holds. So a check that paused the guest cannot un-stun it when the switchover stunned
 * it meanwhile, and no `resume` call runs a guest whose ownership moved away.
 */
import { VmmNotOwnerError } from './errors';
import type { GuestCpu } from './guest-port';

/** One holder's hold on the guest; `release` is idempotent. */
export interface GuestHold {
  readonly holder: string;
  release(): void;
}

/** The run state of one VMM's guest; see the module comment. */
export class GuestRun {
  private readonly holds = new Set<GuestHold>();
  private owns: boolean;

  /** `owner`: whether this VMM owns the VM at start (mode run) or not yet (mode incoming). */
  constructor(
    private readonly vcpu: GuestCpu,
    private readonly vmId: string,
    owner: boolean,
  ) {
    this.owns = owner;
  }

  /** Whether this VMM owns the VM (only the owner's guest may run). */
  get owner(): boolean {
    return this.owns;
  }

  /** Names of the holders holding the guest paused now, in the order they took their holds. */
  holders(): string[] {
    return [...this.holds].map((hold) => hold.holder);
  }

  /**
   * Takes a hold for `holder` and resolves once the vCPU has acknowledged the pause (no guest write
   * happens after that until every hold is released). Rejects with VcpuStoppedError if the vCPU has
   * stopped (the hold is then not taken).
   */
  async hold(holder: string): Promise<GuestHold> {
    let released = false;
    const hold: GuestHold = {
      holder,
      release: () => {
        if (released) return;
        released = true;
        this.holds.delete(hold);
        this.runIfFree();
      },
    };
    // Counted before the pause is awaited: a release by another holder meanwhile must not run it.
    this.holds.add(hold);
    try {
      await this.vcpu.pause();
    } catch (err) {
      hold.release();
      throw err;
    }
    return hold;
  }

  /** This VMM took the ownership epoch: the guest runs as soon as no hold remains. */
  takeOwnership(): void {
    this.owns = true;
    this.runIfFree();
  }

  /**
   * Ownership moved away (to a migration's destination): the guest never runs here again, whatever
   * hold is released or `resume` asked. The caller holds the guest paused already (the stun).
   */
  giveUpOwnership(): void {
    this.owns = false;
  }

  /** Throws VmmNotOwnerError unless this VMM owns the VM (`action` names what was refused). */
  assertOwner(action: string): void {
    if (!this.owns) throw new VmmNotOwnerError(this.vmId, action);
  }

  private runIfFree(): void {
    if (!this.owns || this.holds.size > 0) return;
    try {
      this.vcpu.resume();
    } catch (err) {
      // A vCPU that stopped (the VMM shuts down) has nothing left to run.
      if ((err as Error).name !== 'VcpuStoppedError') throw err;
    }
  }
}
