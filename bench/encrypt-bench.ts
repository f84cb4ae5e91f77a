/**
 * The encrypt part of `npm run bench`: what `policy.encrypt` costs the data plane, measured in one
 * process without a cluster. A batch of incompressible pages (DEFAULT_BATCH_PAGES, 1 MiB) is built
 * and decoded over and over, as the source and the destination do, once in clear (SHA-256 per page
 * and the batch HMAC) and once encrypted (AES-256-GCM per page and the batch HMAC, SHA-256 of the
 * pages on both hosts for the content digest). Beside them, the primitives alone: HMAC-SHA256 and
 * AES-256-GCM (with its per-batch key derivation) over the same megabyte. Then the page file's side
 * (store/page-seal.ts): sealing the batch's pages one by one into their slots, as the source's
 * writer does, and opening them, as the destination's reader does, each against the clear batch
 * (the stream's own rate), since the store lane must keep up with it. Throughputs are of page data
 * (MB/s, 10^6 bytes), each the best of a few timed slices, and the ratios are taken in the same run.
 */
import { randomBytes } from 'node:crypto';
import { BatchBuilder, decodeBatch } from '../data-plane/batch-format';
import { MessageAuth } from '../data-plane/message-auth';
import { PageCipher } from '../data-plane/page-cipher';
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';
import { MAX_BATCH_PAGES } from '../model/migration-input';
import { PageSealer, SEALED_SLOT_BYTES } from '../store/page-seal';

/** Pages per measured batch by default: 256, a 1 MiB batch as the stream sends them. */
export const DEFAULT_ENCRYPT_BENCH_PAGES = 256;
/** Time each measurement runs for by default (ms), split into slices of which the best counts. */
export const DEFAULT_ENCRYPT_BENCH_MS = 1_500;
const SLICES = 5;

/** Options of the encrypt part; all optional. */
export interface EncryptBenchOptions {
  /** Pages per batch; default DEFAULT_ENCRYPT_BENCH_PAGES. */
  pages?: number;
  /** Time per measurement (ms); default DEFAULT_ENCRYPT_BENCH_MS. */
  durationMs?: number;
}

/** What the encrypt part measured; throughputs in MB/s of page data. */
export interface EncryptBenchSummary {
  pages: number;
  /** Build and decode of a batch in clear (hash and MAC), sender and receiver together. */
  clearBatchMBps: number;
  /** The same with `policy.encrypt`. */
  encryptedBatchMBps: number;
  /** encryptedBatchMBps / clearBatchMBps. */
  batchRatio: number;
  /** HMAC-SHA256 of the page data alone. */
  hmacMBps: number;
  /** AES-256-GCM seal of the pages alone, a key derived per batch as the sender does. */
  gcmMBps: number;
  /** gcmMBps / hmacMBps. */
  primitiveRatio: number;
  /** Sealing pages into page-file slots (AES-256-GCM per page), as the source's store writer does. */
  storeSealMBps: number;
  /** Opening them again, as the destination's store reader does. */
  storeOpenMBps: number;
  /** storeSealMBps / clearBatchMBps: above 1, sealing keeps up with the clear stream on one core. */
  storeSealRatio: number;
  /** storeOpenMBps / clearBatchMBps. */
  storeOpenRatio: number;
}

/** Runs `work` (which handles `bytes` of page data) for `durationMs`; the best slice's MB/s. */
function throughput(bytes: number, durationMs: number, work: () => void): number {
  work();
  let best = 0;
  for (let s = 0; s < SLICES; s += 1) {
    const until = performance.now() + durationMs / SLICES;
    let done = 0;
    const start = performance.now();
    do {
      work();
      done += bytes;
    } while (performance.now() < until);
    best = Math.max(best, done / 1e6 / ((performance.now() - start) / 1e3));
  }
  return best;
}

/** Measures the cost of encryption (see the header). */
export function benchEncrypt(options: EncryptBenchOptions = {}): EncryptBenchSummary {
  const pages = options.pages ?? DEFAULT_ENCRYPT_BENCH_PAGES;
  const durationMs = options.durationMs ?? DEFAULT_ENCRYPT_BENCH_MS;
  if (!Number.isInteger(pages) || pages < 1 || pages > MAX_BATCH_PAGES)
    throw new RangeError(`encrypt bench pages must be an integer from 1 to ${MAX_BATCH_PAGES}, got ${pages}`);
  const key = randomBytes(32);
  const auth = new MessageAuth(key, 'migrate-bench-encrypt-0');
  const cipher = new PageCipher(key);
  const data = randomBytes(pages * PAGE_SIZE_BYTES);
  const bytes = data.length;
  const page = (i: number): Buffer => data.subarray(i * PAGE_SIZE_BYTES, (i + 1) * PAGE_SIZE_BYTES);

  const batchRound = (builder: BatchBuilder, receiverCipher?: PageCipher) => (): void => {
    builder.begin();
    for (let i = 0; i < pages; i += 1) builder.addPage(i, page(i));
    decodeBatch(builder.finish(1, 1, 0).frame, auth, receiverCipher);
  };
  const clearBatchMBps = throughput(bytes, durationMs, batchRound(new BatchBuilder(auth, pages)));
  const encryptedBatchMBps = throughput(
    bytes,
    durationMs,
    batchRound(new BatchBuilder(auth, pages, undefined, cipher), cipher),
  );

  const hmacMBps = throughput(bytes, durationMs, () => void auth.mac('batch', data));
  const out = Buffer.allocUnsafe(bytes);
  const aad = Buffer.alloc(pages * 24);
  const gcmMBps = throughput(bytes, durationMs, () => void cipher.seal(cipher.newBatchKey(), aad, data, out, 0));

  const sealer = new PageSealer(key, 'migrate-bench-encrypt-0');
  const slots = Buffer.alloc(pages * SEALED_SLOT_BYTES);
  const storeSealMBps = throughput(bytes, durationMs, () => sealer.sealAll(pages, (k) => k, data, slots));
  const opened = Buffer.allocUnsafe(bytes);
  const storeOpenMBps = throughput(bytes, durationMs, () => sealer.openAll(0, pages, slots, opened));
  if (!opened.equals(data) || sealer.rejectedSlots !== 0)
    throw new Error('the encrypt bench opened sealed pages that differ from those it sealed');
  return {
    pages,
    clearBatchMBps,
    encryptedBatchMBps,
    batchRatio: encryptedBatchMBps / clearBatchMBps,
    hmacMBps,
    gcmMBps,
    primitiveRatio: gcmMBps / hmacMBps,
    storeSealMBps,
    storeOpenMBps,
    storeSealRatio: storeSealMBps / clearBatchMBps,
    storeOpenRatio: storeOpenMBps / clearBatchMBps,
  };
}

/** The encrypt part's table, for the console. */
export function encryptReportLines(s: EncryptBenchSummary): string[] {
  const mb = (v: number): string => `${v.toFixed(0).padStart(6)} MB/s`;
  return [
    `encryption (${s.pages} pages per batch, ${((s.pages * PAGE_SIZE_BYTES) / 2 ** 20).toFixed(2)} MiB)`,
    `  batch build + decode, clear (SHA-256 + HMAC)     ${mb(s.clearBatchMBps)}`,
    `  batch build + decode, encrypted (+ AES-256-GCM)  ${mb(s.encryptedBatchMBps)}  ×${s.batchRatio.toFixed(2)}`,
    `  HMAC-SHA256 alone                                ${mb(s.hmacMBps)}`,
    `  AES-256-GCM alone                                ${mb(s.gcmMBps)}  ×${s.primitiveRatio.toFixed(2)}`,
    `  page file: seal each page into its slot          ${mb(s.storeSealMBps)}  ×${s.storeSealRatio.toFixed(2)} of clear batch`,
    `  page file: open each slot                        ${mb(s.storeOpenMBps)}  ×${s.storeOpenRatio.toFixed(2)} of clear batch`,
  ];
}
