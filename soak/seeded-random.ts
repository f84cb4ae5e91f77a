/**
 * The soak's only source of chance: a seeded generator (mulberry32), so `--seed S` replays the same
 * draw of faults and moments. Not for anything security-related.
 */

/** A reproducible random stream. */
export class SeededRandom {
  private state: number;

  /** `seed` is any integer; the same seed gives the same stream. */
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  /** An integer in [min, max], both included. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** A copy of `items` in random order (Fisher-Yates). */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i -= 1) {
      const j = this.int(0, i);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }
}

/**
 * Draws `count` items: each item once in a random order before any repeats (a shuffled deck,
 * reshuffled when it runs out), so a short soak still meets every fault.
 */
export function drawFromDeck<T>(random: SeededRandom, items: readonly T[], count: number): T[] {
  const drawn: T[] = [];
  while (drawn.length < count) drawn.push(...random.shuffle(items));
  return drawn.slice(0, count);
}
