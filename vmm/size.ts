/**
 * Memory sizes as people write them ("64MiB", "1GiB", "512M") and back. Units are binary, as in
 * QEMU's `-m` and Docker's `--memory`: K, KB and KiB all mean 1024 bytes.
 */
import { InvalidSizeError } from './errors';

const UNIT_BYTES: Readonly<Record<string, number>> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
};

const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/;
const EXPECTED = 'expected a number with an optional unit B, KiB, MiB, GiB';

/**
 * Parses a size into bytes. Accepts a non-negative integer number of bytes, or a string: a
 * decimal number with an optional case-insensitive binary unit (B, K/KB/KiB, M/MB/MiB, G/GB/GiB,
 * T/TB/TiB). Fractions are allowed when they give a whole number of bytes ("1.5GiB").
 * Throws InvalidSizeError ("malformed size \"12XB\": expected a number with an optional unit B,
 * KiB, MiB, GiB") for anything else, including sizes beyond Number.MAX_SAFE_INTEGER.
 */
export function parseSize(input: string | number): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) {
      throw new InvalidSizeError(String(input), 'expected a non-negative whole number of bytes');
    }
    return input;
  }
  const match = SIZE_PATTERN.exec(input);
  const unit = match === null ? undefined : UNIT_BYTES[(match[2] ?? '').toLowerCase()];
  if (match === null || unit === undefined) throw new InvalidSizeError(input, EXPECTED);
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) {
    throw new InvalidSizeError(input, `${bytes} is not a whole number of bytes below 2^53`);
  }
  return bytes;
}

/**
 * Formats bytes with the largest binary unit that keeps at most two decimals exact enough for a
 * log line: 1073741824 → "1 GiB", 1536 → "1.5 KiB", 1000 → "1000 B".
 */
export function formatSize(bytes: number): string {
  const units: ReadonlyArray<[string, number]> = [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ];
  for (const [name, size] of units) {
    if (Math.abs(bytes) >= size) return `${Number((bytes / size).toFixed(2))} ${name}`;
  }
  return `${bytes} B`;
}
