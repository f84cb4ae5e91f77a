/**
 * Fuzzing of everything that reads bytes another process wrote: the page batch decoder, the
 * manifest reader (and the round manifest reader on files) and the control-message parsers.
 * Inputs are valid seeds mutated by a seeded PRNG (bit flips, byte overwrites, truncation,
 * extension, splices, random bytes), so a failure repeats exactly. Two promises are checked:
 * no crash (each decoder ends in its own typed error or its "not a message" answer), and nothing
 * mutated is accepted unless it was sealed again under the key (then it may decode, but must
 * decode consistently).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BATCH_FLAG_ENCRYPTED, BatchBuilder, decodeBatch, type DecodedBatch } from '../../data-plane/batch-format';
import { PageCipher } from '../../data-plane/page-cipher';
import { MAC_BYTES, MessageAuth } from '../../data-plane/message-auth';
import {
  decodeControl,
  decodeCredit,
  decodeSyncReply,
  encodeCredit,
  encodeSync,
  encodeSyncReply,
  openFinalReply,
  openFinalRequest,
  sealFinalReply,
  sealFinalRequest,
} from '../../data-plane/control-messages';
import type { FinalReply, FinalRequest } from '../../model/protocol';
import { decodeManifest, encodeManifest } from '../../store/manifest-format';
import { readNewestRoundManifest } from '../../store/directory/round-manifests';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const int = (rng: Rng, n: number): number => Math.floor(rng() * n);
function randomBytes(rng: Rng, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += 1) out[i] = int(rng, 256);
  return out;
}

/** One mutation of `seed`; `headerBytes` biases some mutations to the start, where the fields are. */
function mutate(seed: Buffer, rng: Rng, headerBytes = 64): Buffer {
  const at = (limit: number): number => int(rng, Math.max(1, Math.min(limit, seed.length)));
  switch (int(rng, 7)) {
    case 0: {
      const out = Buffer.from(seed);
      for (let flips = 1 + int(rng, 8); flips > 0 && out.length > 0; flips -= 1) {
        const i = rng() < 0.5 ? at(headerBytes) : at(out.length);
        out[i] = (out[i] as number) ^ (1 << int(rng, 8));
      }
      return out;
    }
    case 1: {
      const out = Buffer.from(seed);
      if (out.length > 0) out[at(headerBytes)] = int(rng, 256);
      return out;
    }
    case 2:
      return Buffer.from(seed.subarray(0, int(rng, seed.length)));
    case 3:
      return Buffer.concat([seed, randomBytes(rng, 1 + int(rng, 64))]);
    case 4: {
      // Splice: a run of the seed copied over another place of it.
      const out = Buffer.from(seed);
      const from = at(out.length);
      const to = at(out.length);
      seed.copy(out, to, from, from + 1 + int(rng, 32));
      return out;
    }
    case 5: {
      // A 32-bit field overwritten with an extreme value.
      const out = Buffer.from(seed);
      const field = at(headerBytes) & ~3;
      if (field + 4 <= out.length)
        out.writeUInt32LE([0, 1, 0x7fffffff, 0xffffffff, int(rng, 2 ** 32)][int(rng, 5)] as number, field);
      return out;
    }
    default: {
      // Random bytes, half of them behind the seed's first eight (its magic and format).
      const noise = randomBytes(rng, int(rng, 512));
      return rng() < 0.5 ? noise : Buffer.concat([seed.subarray(0, 8), noise]);
    }
  }
}

/** Runs `decode` and says how it ended: accepted, refused in its own way, or crashed. */
function outcome(decode: () => unknown, ownError: string): 'accepted' | 'refused' | 'crashed' {
  try {
    return decode() === undefined ? 'refused' : 'accepted';
  } catch (err) {
    return (err as Error | null)?.name === ownError ? 'refused' : 'crashed';
  }
}

const KEY = Buffer.alloc(32, 7);
const auth = new MessageAuth(KEY, 'fuzz-migration');

describe('fuzzed decoders', () => {
  const totals = { inputs: 0 };
  afterAll(() => {
    // The brief of the fuzz test: at least 100,000 mutated inputs over all decoders.
    expect(totals.inputs).toBeGreaterThanOrEqual(100_000);
  });

  it('the batch decoder refuses 50,000 mutated batches with BatchFormatError, crashing on none and accepting none', () => {
    const memory = GuestMemory.create(8);
    for (let i = 0; i < 6; i += 1) memory.writePage(i, i + 1, 5);
    const seeds = [0, 1, 3].map((dataPages, n) => {
      const builder = new BatchBuilder(auth, 4);
      builder.begin();
      for (let i = 0; i < dataPages; i += 1) builder.addPage(i, memory.page(i));
      builder.addPage(7, null);
      return Buffer.from(builder.finish(n, n + 1, n).frame);
    });
    const rng = prng(0xba7c4);
    const counts = { accepted: 0, refused: 0, crashed: 0, unchanged: 0 };
    for (let n = 0; n < 50_000; n += 1) {
      const seed = seeds[n % seeds.length] as Buffer;
      const input = mutate(seed, rng);
      if (input.equals(seed)) {
        counts.unchanged += 1;
        continue;
      }
      counts[outcome(() => decodeBatch(input, auth), 'BatchFormatError')] += 1;
    }
    totals.inputs += 50_000 - counts.unchanged;
    expect(counts).toMatchObject({ accepted: 0, crashed: 0 });
    expect(counts.refused).toBeGreaterThan(49_000);
  });

  it('the batch decoder, given 10,000 mutated batches sealed again under the key, crashes on none and decodes only consistent ones', () => {
    const memory = GuestMemory.create(4);
    for (let i = 0; i < 4; i += 1) memory.writePage(i, 9, 5);
    const builder = new BatchBuilder(auth, 4);
    builder.begin();
    builder.addPage(0, memory.page(0));
    builder.addPage(2, null);
    builder.addPage(3, memory.page(3));
    const seed = Buffer.from(builder.finish(2, 40, 0).frame);
    const rng = prng(0x5ea1ed);
    const counts = { accepted: 0, refused: 0, crashed: 0 };
    for (let n = 0; n < 10_000; n += 1) {
      const input = mutate(seed, rng);
      // Sealed again: the MAC as the decoder will compute it over what the mutated header claims.
      if (input.length >= 24 + MAC_BYTES) {
        const entriesOffset = 24 + ((input.readUInt16LE(20) + 3) & ~3);
        const dataStart = entriesOffset + input.readUInt32LE(16) * 24;
        if (dataStart <= input.length - MAC_BYTES)
          auth.mac('batch', input.subarray(0, dataStart)).copy(input, input.length - MAC_BYTES);
      }
      let decoded: DecodedBatch | undefined;
      const ended = outcome(() => (decoded = decodeBatch(input, auth)), 'BatchFormatError');
      counts[ended] += 1;
      if (decoded) {
        const dataPages = decoded.entries.filter((e) => !e.zero).length;
        expect(decoded.pageData.length).toBe(dataPages * PAGE_SIZE_BYTES);
        expect(decoded.migrationId).toBe(auth.migrationId);
      }
    }
    totals.inputs += 10_000;
    expect(counts.crashed).toBe(0);
  });

  it('the batch decoder, given 10,000 mutated encrypted batches sealed again under the MAC key, crashes on none and yields only the pages sent', () => {
    const memory = GuestMemory.create(4);
    for (let i = 0; i < 4; i += 1) memory.writePage(i, 9, 5);
    const cipher = new PageCipher(KEY);
    const builder = new BatchBuilder(auth, 4, undefined, cipher);
    builder.begin();
    builder.addPage(0, memory.page(0));
    builder.addPage(2, null);
    builder.addPage(3, memory.page(3));
    const { frame, pageData } = builder.finish(2, 40, 0);
    const seed = Buffer.from(frame);
    const rng = prng(0xc1fe2);
    const counts = { accepted: 0, refused: 0, crashed: 0 };
    for (let n = 0; n < 10_000; n += 1) {
      const input = mutate(seed, rng);
      // Sealed again, so that the mutation reaches the decryption: only the cipher stands in its way.
      if (input.length >= 24 + MAC_BYTES) {
        const encrypted = (input.readUInt16LE(6) & BATCH_FLAG_ENCRYPTED) !== 0;
        const entriesOffset = 24 + ((input.readUInt16LE(20) + 3) & ~3) + (encrypted ? 32 : 0);
        const dataStart = entriesOffset + input.readUInt32LE(16) * 24;
        if (dataStart <= input.length - MAC_BYTES)
          auth.mac('batch', input.subarray(0, dataStart)).copy(input, input.length - MAC_BYTES);
      }
      let decoded: DecodedBatch | undefined;
      counts[outcome(() => (decoded = decodeBatch(input, auth, cipher)), 'BatchFormatError')] += 1;
      if (decoded && (decoded.flags & BATCH_FLAG_ENCRYPTED) !== 0) expect(decoded.pageData.equals(pageData)).toBe(true);
    }
    totals.inputs += 10_000;
    expect(counts.crashed).toBe(0);
    expect(counts.refused).toBeGreaterThan(9_000);
  });

  it('the manifest reader refuses 30,000 mutated manifests with ManifestFormatError, crashing on none and accepting none', () => {
    const seeds = [
      encodeManifest({
        round: 0,
        final: false,
        indexes: new Uint32Array(),
        versions: new Uint32Array(),
        finalSeq: 0,
        digest: '',
      }),
      encodeManifest({
        round: 3,
        final: false,
        indexes: Uint32Array.from({ length: 40 }, (_, i) => i * 3),
        versions: Uint32Array.from({ length: 40 }, (_, i) => i + 1),
        finalSeq: 0,
        digest: '',
      }),
      encodeManifest({
        round: 9,
        final: true,
        indexes: Uint32Array.of(1, 2, 3, 900),
        versions: Uint32Array.of(4, 4, 5, 1),
        finalSeq: 77,
        digest: 'ab'.repeat(32),
      }),
    ];
    const rng = prng(0x3a41f);
    const counts = { accepted: 0, refused: 0, crashed: 0, unchanged: 0 };
    for (let n = 0; n < 30_000; n += 1) {
      const seed = seeds[n % seeds.length] as Buffer;
      const input = mutate(seed, rng, 96);
      if (input.equals(seed)) {
        counts.unchanged += 1;
        continue;
      }
      counts[outcome(() => decodeManifest(input), 'ManifestFormatError')] += 1;
    }
    totals.inputs += 30_000 - counts.unchanged;
    expect(counts).toMatchObject({ accepted: 0, crashed: 0 });
  });

  it('the round manifest reader refuses mutated manifest files with PageStoreError, crashing on none', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-fuzz-manifest-'));
    try {
      const seed = encodeManifest({
        round: 1,
        final: false,
        indexes: Uint32Array.of(0, 5, 6),
        versions: Uint32Array.of(1, 2, 3),
        finalSeq: 0,
        digest: '',
      });
      const rng = prng(0xf11e);
      const counts = { accepted: 0, refused: 0, crashed: 0 };
      for (let n = 0; n < 300; n += 1) {
        const input = mutate(seed, rng, 96);
        if (input.equals(seed)) continue;
        fs.writeFileSync(path.join(dir, `manifest-${String(n).padStart(5, '0')}.bin`), input);
        try {
          await readNewestRoundManifest({ dir, header: { migrationId: 'fuzz' } });
          counts.accepted += 1;
        } catch (err) {
          const e = err as Error;
          counts[
            e.name === 'PageStoreError' && (e.cause as Error).name === 'ManifestFormatError' ? 'refused' : 'crashed'
          ] += 1;
        }
      }
      expect(counts).toMatchObject({ accepted: 0, crashed: 0 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the control-message parsers refuse 40,000 mutated messages, crashing on none and accepting none', () => {
    const request: FinalRequest = {
      type: 'final',
      finalSeq: 812,
      digest: 'cd'.repeat(32),
      contentDigest: 'ef'.repeat(32),
      stunAt: 1_700_000_000_000,
      workload: { type: 'hotset', rateBytesPerSec: 1e7, hotSetBytes: 2 ** 22 },
      seed: 4,
    };
    const reply: FinalReply = {
      ok: true,
      stunAt: 1,
      resumedAt: 2,
      digest: 'cd'.repeat(32),
      contentDigest: 'ef'.repeat(32),
      pagesFromStore: 3,
      gapBatches: 0,
      tornPagesRepaired: 0,
      verifyMs: 4.5,
    };
    const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
    const parsers: { seed: Buffer; parse: (data: Buffer) => unknown }[] = [
      { seed: encodeSync(auth, 4_000), parse: (d) => decodeControl(auth, d) },
      { seed: json(sealFinalRequest(auth, request)), parse: (d) => decodeControl(auth, d) },
      { seed: encodeCredit(auth, { grantedSeq: 90, appliedSeq: 74 }), parse: (d) => decodeCredit(auth, d) },
      {
        seed: encodeSyncReply(auth, 4_000, { grantedSeq: 4_016, appliedSeq: 4_000 }),
        parse: (d) => decodeSyncReply(auth, d, 4_000),
      },
      { seed: json(sealFinalReply(auth, 812, reply)), parse: (d) => openFinalReply(auth, d, 812) },
      {
        // The mailbox lane: the store hands over the parsed JSON.
        seed: json(sealFinalRequest(auth, request)),
        parse: (d) => {
          let message: unknown;
          try {
            message = JSON.parse(d.toString('utf8'));
          } catch {
            return undefined;
          }
          return openFinalRequest(auth, message);
        },
      },
    ];
    for (const { seed, parse } of parsers) expect(parse(seed)).toBeDefined();
    const rng = prng(0xc0de);
    const counts = { accepted: 0, refused: 0, crashed: 0, unchanged: 0 };
    for (let n = 0; n < 40_000; n += 1) {
      const { seed, parse } = parsers[n % parsers.length] as (typeof parsers)[number];
      const input = mutate(seed, rng, seed.length);
      if (input.equals(seed)) {
        counts.unchanged += 1;
        continue;
      }
      const ended = outcome(() => parse(input), 'none');
      // The mailbox lane parses JSON again: a mutation that leaves the same JSON value is the same message.
      if (ended === 'accepted' && n % parsers.length === 5) {
        if (JSON.stringify(JSON.parse(input.toString('utf8'))) === seed.toString('utf8')) {
          counts.unchanged += 1;
          continue;
        }
      }
      counts[ended] += 1;
    }
    totals.inputs += 40_000 - counts.unchanged;
    expect(counts).toMatchObject({ accepted: 0, crashed: 0 });
  });
});
