/**
 * Parses the serial console lines of ferry's guest program (guest/memwriter.c documents the
 * format) into tagged messages. Lines that are not the program's (kernel messages, a line cut in
 * two by a migration) parse to undefined.
 */

/** The guest program's heartbeat, every ~100 ms. */
export interface GuestHeartbeat {
  type: 'heartbeat';
  /** Heartbeat number, from 0 without gaps; a migrated guest carries on from the source's. */
  seq: number;
  /** Guest time since the program started, milliseconds (CLOCK_MONOTONIC in the guest). */
  guestMs: number;
  /** Bytes rewritten in the hot set since the fill. */
  writtenBytes: number;
  /** The running checksum (sum of all page hashes), 16 hex digits. */
  sum: string;
  /** Page checks done since start. */
  verifiedPages: number;
  /** Completed verification passes over the whole buffer. */
  sweeps: number;
  /** Failed checks since start (0 while the memory is intact). */
  bad: number;
  /** `ok` while bad is 0, `CORRUPT` after. */
  state: 'ok' | 'CORRUPT';
}

/** One line of the guest program (or of its /init) on the console, tagged by `type`. */
export type GuestConsoleMessage =
  | { type: 'start'; pages: number; hotPages: number; rateMbPerSec: number; verifyMbPerSec: number }
  | { type: 'ready'; fillMs: number; sum: string }
  | GuestHeartbeat
  | { type: 'corrupt'; page: string; want: string; got: string }
  | { type: 'error'; text: string }
  | { type: 'exit'; status: number };

function fields(rest: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const token of rest.trim().split(/\s+/)) {
    const eq = token.indexOf('=');
    if (eq > 0) map.set(token.slice(0, eq), token.slice(eq + 1));
  }
  return map;
}

function int(map: Map<string, string>, key: string): number | undefined {
  const raw = map.get(key);
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  return Number(raw);
}

function hex16(map: Map<string, string>, key: string): string | undefined {
  const raw = map.get(key);
  return raw !== undefined && /^[0-9a-f]{16}$/.test(raw) ? raw : undefined;
}

function heartbeat(map: Map<string, string>): GuestHeartbeat | undefined {
  const seq = int(map, 'seq');
  const guestMs = int(map, 'ms');
  const writtenBytes = int(map, 'written');
  const sum = hex16(map, 'sum');
  const verifiedPages = int(map, 'verified');
  const sweeps = int(map, 'sweeps');
  const bad = int(map, 'bad');
  const state = map.get('state');
  if (
    seq === undefined ||
    guestMs === undefined ||
    writtenBytes === undefined ||
    sum === undefined ||
    verifiedPages === undefined ||
    sweeps === undefined ||
    bad === undefined ||
    (state !== 'ok' && state !== 'CORRUPT')
  )
    return undefined;
  return { type: 'heartbeat', seq, guestMs, writtenBytes, sum, verifiedPages, sweeps, bad, state };
}

/** The message on `line` (without its line ending, a trailing \r is ignored), or undefined. */
export function parseGuestConsoleLine(line: string): GuestConsoleMessage | undefined {
  const text = line.replace(/\r$/, '');
  if (text.startsWith('ferry-hb ')) return heartbeat(fields(text.slice(9)));
  if (text.startsWith('ferry-corrupt ')) {
    const map = fields(text.slice(14));
    const [page, want, got] = [map.get('page'), map.get('want'), map.get('got')];
    return page !== undefined && want !== undefined && got !== undefined
      ? { type: 'corrupt', page, want, got }
      : undefined;
  }
  const m = /^ferry-memwriter (start|ready|error|exit)(?: (.*))?$/.exec(text);
  if (m === null) return undefined;
  const rest = m[2] ?? '';
  const map = fields(rest);
  switch (m[1]) {
    case 'start': {
      const [pages, hotPages, rate, verify] = [
        int(map, 'pages'),
        int(map, 'hot_pages'),
        int(map, 'rate_mbps'),
        int(map, 'verify_mbps'),
      ];
      if (pages === undefined || hotPages === undefined || rate === undefined || verify === undefined) return undefined;
      return { type: 'start', pages, hotPages, rateMbPerSec: rate, verifyMbPerSec: verify };
    }
    case 'ready': {
      const fillMs = int(map, 'fill_ms');
      const sum = hex16(map, 'sum');
      return fillMs === undefined || sum === undefined ? undefined : { type: 'ready', fillMs, sum };
    }
    case 'exit': {
      const status = int(map, 'status');
      return status === undefined ? undefined : { type: 'exit', status };
    }
    default:
      return { type: 'error', text: rest };
  }
}
