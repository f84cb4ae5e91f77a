/**
 * The QEMU bench part's printed report: one line per run of ferry and of QEMU's own migration
 * (times, bytes, differing pages, the guest after resume), the ratios, the NATS-killed run, the
 * medians and the targets met or not.
 */
import type { QemuFerryRun } from './qemu-ferry-run';
import type { QemuOwnRun } from './qemu-own-run';
import type { QemuSummary } from './qemu-summary';

const ms = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(1));
const mb = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '-' : (v / 1e6).toFixed(0));
const x = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '-' : `${v.toFixed(2)}×`);

function row(cells: string[]): string {
  const widths = [22, 4, 10, 12, 32, 10, 0];
  return cells.map((c, i) => ((widths[i] ?? 0) > 0 ? c.padEnd(widths[i] ?? 0) : c)).join(' ');
}

function ferryRow(label: string, r: QemuFerryRun): string {
  if (!r.ok) return row([label, String(r.run), `FAILED: ${r.error ?? 'unknown'}`]);
  const bytes = `net ${mb(r.bytesViaNetwork)} / mirror ${mb(r.bytesMirroredToStore)} / store ${mb(r.bytesViaStore)}`;
  const guest = r.guestCarriedOn ? `ok (seq ${r.sourceLastSeq}→${r.destinationSeq})` : 'NOT intact';
  return row([
    label,
    String(r.run),
    ms(r.totalMs),
    ms(r.downtimeMs),
    bytes,
    String(r.differingPages ?? '-'),
    `${guest}; ferry says total ${ms(r.reportedTotalMs)}, downtime ${ms(r.reportedDowntimeMs)}, ${r.rounds} rounds`,
  ]);
}

function qemuRow(r: QemuOwnRun): string {
  if (!r.ok) return row(["QEMU's own", String(r.run), `FAILED: ${r.error ?? 'unknown'}`]);
  const g = r.guestAfterResume;
  const guest = !g
    ? '-'
    : g.intact
      ? `ok (${g.heartbeats} heartbeats in ${(g.windowMs / 1000).toFixed(1)} s)`
      : `NOT ok: state ${g.state}, bad ${g.bad ?? '-'}, ${g.heartbeats} heartbeats` +
        `${g.qemuExited ? ', QEMU exited' : ''}${g.programExit !== undefined ? `, program exit ${g.programExit}` : ''}` +
        `${g.panicLine ? `, panic: ${g.panicLine}` : ''}`;
  return row([
    "QEMU's own",
    String(r.run),
    ms(r.totalMs),
    ms(r.downtimeMs),
    `ram.transferred ${mb(r.bytesTransferred)}`,
    String(r.differingPages ?? '-'),
    `${guest}; QEMU says total ${ms(r.qemuReportedTotalMs)}, downtime ${ms(r.qemuReportedDowntimeMs)}; hold ${ms(r.holdMs)}`,
  ]);
}

function roundsLine(r: QemuFerryRun): string {
  const rounds = (r.roundsDetail ?? []).map(
    (d) =>
      `${(d.durationMs / 1000).toFixed(1)} s ${d.lane} ${(d.bytesSent / 1e6).toFixed(0)} MB ` +
      `@ ${(d.throughputBytesPerSec / 1e6).toFixed(0)} MB/s`,
  );
  return `  rounds: ${rounds.join('; ')}; outside rounds and downtime ${ms(r.outsideRoundsMs)} ms`;
}

/** The report's lines; see the module comment. */
export function qemuReportLines(s: QemuSummary): string[] {
  const lines = [
    '',
    `QEMU guest (${s.qemuVersion}, TCG): ${s.memoryMib} MiB, ${s.fillMib} MiB filled with random data (the guest ` +
      `program's largest fill), ${s.hotMib} MiB hot set rewritten at ${s.rateMbPerSec} MB/s`,
    `QEMU's own: ${s.qemuOwn.transport}, downtime-limit ${s.qemuOwn.downtimeLimitMs} ms, max-bandwidth ` +
      `${s.qemuOwn.maxBandwidthBytesPerSec} B/s; ferry: directory store, keepSourceAfterSwitchover, defaults otherwise`,
    'total = migration start → destination RESUME event; downtime = source STOP event → destination RESUME event',
  ];
  if (s.error !== undefined) lines.push(`QEMU part FAILED: ${s.error}`);
  lines.push(row(['', 'run', 'total ms', 'downtime ms', 'MB moved', 'diff pages', 'guest after resume']));
  for (const f of s.ferryRuns) {
    lines.push(ferryRow('ferry', f));
    if (f.ok) lines.push(roundsLine(f));
    const q = s.qemuRuns.find((r) => r.run === f.run);
    if (q) lines.push(qemuRow(q));
    const ratio = s.ratios.find((r) => r.run === f.run);
    lines.push(row(['  ratio ferry / QEMU', String(f.run), x(ratio?.totalRatio), x(ratio?.downtimeRatio)]));
  }
  if (s.natsKillRun) {
    const k = s.natsKillRun;
    lines.push(ferryRow('ferry, NATS killed', k));
    if (k.ok) lines.push(roundsLine(k));
    lines.push(
      `  nats-server SIGKILLed ${ms(k.killedAtMs)} ms into the migration, the destination having applied ` +
        `${k.pagesAppliedAtKill ?? '-'} pages; ${s.natsKillNote}`,
    );
  }
  const m = s.medians;
  lines.push(
    row(['median ferry', '', ms(m.ferry.totalMs), ms(m.ferry.downtimeMs), `net ${mb(m.ferry.bytesViaNetwork)}`]),
    row(["median QEMU's own", '', ms(m.qemu.totalMs), ms(m.qemu.downtimeMs), `ram ${mb(m.qemu.bytesTransferred)}`]),
    row(['ratio of medians', '', x(s.medianRatios.total), x(s.medianRatios.downtime)]),
  );
  for (const t of s.targets)
    lines.push(
      `target ${t.name}: ${typeof t.value === 'number' ? x(t.value) : t.value} — ${t.met ? 'met' : 'NOT met'}`,
    );
  return lines;
}
