/** Renders a migration's progress: a redrawn bar on a TTY, one line per change elsewhere. */
import type { MigrationProgress, MigrationResult, ThrottleSummary } from '../workflows/types';

const BAR_WIDTH = 10;

/** Bytes as a short human figure, e.g. `512.0 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** A rate in MB/s (decimal, as network rates are quoted). */
export function formatRate(bytesPerSec: number): string {
  return `${(bytesPerSec / 1e6).toFixed(0)} MB/s`;
}

/** One line describing `p` (under 80 columns with the bar), with a bar when `withBar`. */
export function progressLine(p: MigrationProgress, withBar: boolean): string {
  const done = p.memoryPages > 0 ? 1 - Math.min(p.pagesRemaining, p.memoryPages) / p.memoryPages : 0;
  const filled = Math.round(done * BAR_WIDTH);
  const bar = withBar ? `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ` : '';
  const estimate =
    p.expectedDowntimeMs < 0 ? '-' : Number.isFinite(p.expectedDowntimeMs) ? p.expectedDowntimeMs.toFixed(0) : 'inf';
  const incidents = p.incidents.length > 0 ? ` | ${p.incidents.length} incident(s)` : '';
  const throttle = p.throttlePercent > 0 ? ` | throttle ${p.throttlePercent}%` : '';
  return (
    `${bar}${p.phase} r${p.round} | ${p.pagesRemaining} left | ${formatRate(p.throughputBytesPerSec)} | ` +
    `dirty ${formatRate(p.dirtyRateBytesPerSec)}${throttle} | est ${estimate}/${p.downtimeLimitMs} ms${incidents}`
  );
}

/** Follows progress on `out`; call `update` on every poll and `end` once. */
export class ProgressView {
  private lastLine = '';

  constructor(private readonly out: NodeJS.WriteStream) {}

  /** Shows `p` (redrawn in place on a TTY; on other outputs only when it changed). */
  update(p: MigrationProgress): void {
    const tty = this.out.isTTY === true;
    const line = progressLine(p, tty);
    if (line === this.lastLine) return;
    this.lastLine = line;
    if (tty) this.out.write(`\r\x1b[2K${line.slice(0, (this.out.columns ?? 200) - 1)}`);
    else this.out.write(`${line}\n`);
  }

  /** Ends the redrawn line. */
  end(): void {
    if (this.out.isTTY === true && this.lastLine !== '') this.out.write('\n');
  }
}

/** A human summary of a finished migration. */
export function resultSummary(r: MigrationResult): string {
  const lines = [
    `migration ${r.migrationId}: ${r.outcome}${r.reason ? ` (${r.reason})` : ''}`,
    `  VM ${r.vmId} ${r.sourceHost} -> ${r.destinationHost}, running on ${r.runningOn ?? 'no host (no copy runs)'}`,
    `  rounds ${r.rounds.length}, total ${(r.totalMs / 1000).toFixed(2)} s, downtime ${r.downtimeMs.toFixed(1)} ms${r.forcedSwitchover ? ' (forced)' : ''}`,
    `  via network ${formatBytes(r.bytesViaNetwork)}, via store ${formatBytes(r.bytesViaStore)}, mirrored ${formatBytes(r.bytesMirroredToStore)}, lost batches ${r.gapBatches}`,
    `  store ${r.store ?? 'not reached'}${r.switchover ? `, lagging ${formatBytes(r.switchover.storeLagBytes)} behind the stream at stun` : ''}`,
    `  verified ${r.verified} (source ${r.sourceDigest.slice(0, 16)}…, destination ${r.destinationDigest.slice(0, 16)}…)`,
  ];
  if (r.throttle) lines.push(`  ${throttleLine(r.throttle)}`);
  for (const incident of r.incidents) {
    lines.push(`  ! ${incident.at}: ${incident.what} -> ${incident.recovery}`);
  }
  for (const round of r.rounds) {
    const throttled = round.throttlePercent > 0 ? `, throttled ${round.throttlePercent}%` : '';
    lines.push(
      `    round ${round.round}: ${round.pagesSent} pages, ${formatBytes(round.bytesSent)} in ${round.durationMs.toFixed(0)} ms ` +
        `(${formatRate(round.throughputBytesPerSec)}), dirtied ${round.dirtyPages} pages (${formatRate(round.dirtyRateBytesPerSec)})${throttled}, ` +
        `store ${formatBytes(round.storeLagBytes)} behind`,
    );
  }
  return lines.join('\n');
}

/** One line on the throttle: policy, where it started and went, and what it cost the guest. */
export function throttleLine(t: ThrottleSummary): string {
  const start =
    t.history === undefined
      ? ''
      : t.history === null
        ? ', no history of this VM yet'
        : `, started at ${t.startPercent}% from ${t.history.migrationId}`;
  const requests = t.requests > 0 ? `, ${t.requests} change(s) by request` : '';
  if (t.maxPercent === 0) return `throttle ${t.policy}: never throttled${start}${requests}`;
  return (
    `throttle ${t.policy}: up to ${t.maxPercent}%, ${t.finalPercent}% at the end${start}${requests}; ` +
    `the guest lost ${(t.throttledMs / 1000).toFixed(2)} s of vCPU time (${(t.workLostShare * 100).toFixed(1)}% of its pre-copy time)`
  );
}
