/**
 * Watches the copies of one VM while its migration runs, from outside: which of the two hosts'
 * VMMs report a running vCPU. It asks the hosts in turn, so it sees each host every two probes.
 */
import { vcpuState, type VmmLocator } from './vmm-probe';

/** What the watch saw. */
export interface CopiesSeen {
  /** Probes that confirmed two copies running at once (see CopiesWatch). */
  overlaps: number;
  /**
   * Longest stretch in which no copy was seen running (ms): the guest's pause as seen from
   * outside, to within two probe intervals. A VM that was lost counts until the watch stopped.
   */
  longestNoCopyMs: number;
}

/**
 * A copy that runs on one host both just before and just after the other host's copy was seen
 * running ran at the same moment as it; a switchover that happens between two probes (stun, then
 * resume elsewhere) is never mistaken for an overlap.
 */
export class CopiesWatch {
  private stopped = false;
  private overlaps = 0;
  private longestNoCopyMs = 0;
  private noCopySince: number | undefined;
  private readonly done: Promise<void>;

  /** Starts probing `hosts` (two of them) for `vmId`, one host every `intervalMs`. */
  constructor(
    private readonly at: VmmLocator,
    private readonly hosts: readonly [string, string],
    private readonly vmId: string,
    private readonly intervalMs = 50,
  ) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    const seen: boolean[] = [];
    let lastRunningAt = Date.now();
    for (let turn = 0; !this.stopped; turn += 1) {
      const running = (await vcpuState(this.at, this.hosts[turn % 2] as string, this.vmId)) === 'running';
      const now = Date.now();
      seen.push(running);
      if (seen.length > 3) seen.shift();
      if (seen.length === 3 && seen.every(Boolean)) this.overlaps += 1;
      if (running) {
        this.closeNoCopy(now);
        lastRunningAt = now;
      } else if (this.noCopySince === undefined && seen.length >= 2 && !seen[seen.length - 2]) {
        // Both hosts' latest answers say no copy runs: the pause began after the last copy seen running.
        this.noCopySince = lastRunningAt;
      }
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  private closeNoCopy(now: number): void {
    if (this.noCopySince === undefined) return;
    this.longestNoCopyMs = Math.max(this.longestNoCopyMs, now - this.noCopySince);
    this.noCopySince = undefined;
  }

  /** Stops probing; resolves with what was seen (the same on a second call). */
  async stop(): Promise<CopiesSeen> {
    if (!this.stopped) {
      this.stopped = true;
      await this.done;
      this.closeNoCopy(Date.now());
    }
    await this.done;
    return { overlaps: this.overlaps, longestNoCopyMs: this.longestNoCopyMs };
  }
}
