/**
 * "Did you mean …?": the known name closest to a misspelt one, for unknown keys and flags alike.
 * A name is close when a few edits turn one into the other (about a third of its letters), or when
 * one starts with the other (`downtime` for `downtimeLimitMs`).
 */

/** Shortest a name must be for a prefix of it to count as close. */
const MIN_PREFIX_CHARS = 4;

/** Optimal string alignment distance (insertions, deletions, substitutions, adjacent swaps). */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i += 1) rows.push([i]);
  for (let j = 1; j <= b.length; j += 1) (rows[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i += 1) {
    const row = rows[i] as number[];
    const above = rows[i - 1] as number[];
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((above[j] as number) + 1, (row[j - 1] as number) + 1, (above[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        row[j] = Math.min(row[j] as number, ((rows[i - 2] as number[])[j - 2] as number) + 1);
    }
  }
  return (rows[a.length] as number[])[b.length] as number;
}

/**
 * The candidate closest to `name`, or undefined when none is close. Case and the separators
 * `-` and `_` are ignored, so `downtime_limit_ms` finds `downtimeLimitMs`.
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const plain = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  const wanted = plain(name);
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const known = plain(candidate);
    const distance = editDistance(wanted, known);
    const prefix =
      Math.min(wanted.length, known.length) >= MIN_PREFIX_CHARS &&
      (known.startsWith(wanted) || wanted.startsWith(known));
    const close = distance <= Math.max(1, Math.floor(known.length / 3)) || prefix;
    if (close && (best === undefined || distance < best.distance)) best = { candidate, distance };
  }
  return best?.candidate;
}
