import { randomBytes } from 'node:crypto';
import { BATCH_FLAG_ENCRYPTED, BatchBuilder, batchSizeBytes, decodeBatch } from '../../data-plane/batch-format';
import { MessageAuth } from '../../data-plane/message-auth';
import { PAGE_CIPHER_SALT_BYTES, PAGE_TAG_BYTES, PageCipher, type BatchKey } from '../../data-plane/page-cipher';
import { PageHashes, pageHash } from '../../data-plane/page-hashes';
import { GuestMemory, PAGE_SIZE_BYTES } from '../../vmm/guest-memory';

const KEY = randomBytes(32);

/** A page of random bytes. */
const randomPage = (): Buffer => randomBytes(PAGE_SIZE_BYTES);

const AAD = Buffer.from('entry table');

/** Seals `pages` under `key` and returns ciphertext and tag. */
function seal(cipher: PageCipher, key: BatchKey, pages: Buffer) {
  const ciphertext = Buffer.alloc(pages.length);
  const tag = cipher.seal(key, AAD, pages, ciphertext, 0);
  return { ciphertext, tag };
}

/** Memory of `pageCount` pages with distinct content, page i at generation i + 1 unless listed in `zero`. */
function memoryWithPages(pageCount: number, zero: readonly number[] = []): GuestMemory {
  const memory = GuestMemory.create(pageCount);
  for (let i = 0; i < pageCount; i += 1) if (!zero.includes(i)) memory.writePage(i, i + 1, 11);
  return memory;
}

/** An encrypted batch of `indexes` of `memory`, with the clear pages the page file would be given. */
function encryptedBatch(memory: GuestMemory, indexes: readonly number[], hashes?: PageHashes) {
  const auth = new MessageAuth(KEY, 'enc-1');
  const builder = new BatchBuilder(auth, indexes.length, hashes, new PageCipher(KEY));
  builder.begin();
  for (const i of indexes) builder.addPage(i, memory.isZeroPage(i) ? null : memory.page(i));
  return { auth, ...builder.finish(2, 5, 0) };
}

describe('page cipher', () => {
  it('opens what it sealed, and the ciphertext is as long as the pages and unlike them', () => {
    const cipher = new PageCipher(KEY);
    const key = cipher.newBatchKey();
    const pages = Buffer.concat([randomPage(), randomPage()]);
    const { ciphertext, tag } = seal(cipher, key, pages);
    expect(tag.length).toBe(PAGE_TAG_BYTES);
    expect(ciphertext.length).toBe(pages.length);
    expect(ciphertext.equals(pages)).toBe(false);

    const out = Buffer.alloc(pages.length);
    const receiver = new PageCipher(KEY);
    expect(receiver.open(receiver.batchKey(key.salt), AAD, ciphertext, tag, out, 0)).toBe(true);
    expect(out.equals(pages)).toBe(true);
  });

  it('refuses pages with one bit flipped in the ciphertext, the tag or the entry table, or under another key', () => {
    const cipher = new PageCipher(KEY);
    const key = cipher.newBatchKey();
    const { ciphertext, tag } = seal(cipher, key, randomPage());
    const out = Buffer.alloc(PAGE_SIZE_BYTES);
    const flippedData = Buffer.from(ciphertext);
    flippedData[1234] = (flippedData[1234] as number) ^ 0x10;
    const flippedTag = Buffer.from(tag);
    flippedTag[0] = (flippedTag[0] as number) ^ 1;
    const flippedAad = Buffer.from(AAD);
    flippedAad[3] = (flippedAad[3] as number) ^ 4;

    expect(cipher.open(key, AAD, ciphertext, tag, out, 0)).toBe(true);
    expect(cipher.open(key, AAD, flippedData, tag, out, 0)).toBe(false);
    expect(cipher.open(key, AAD, ciphertext, flippedTag, out, 0)).toBe(false);
    expect(cipher.open(key, flippedAad, ciphertext, tag, out, 0)).toBe(false);
    expect(cipher.open(key, AAD, ciphertext, tag.subarray(0, 12), out, 0)).toBe(false);
    expect(cipher.open(cipher.newBatchKey(), AAD, ciphertext, tag, out, 0)).toBe(false);
    const otherMigration = new PageCipher(randomBytes(32));
    expect(otherMigration.open(otherMigration.batchKey(key.salt), AAD, ciphertext, tag, out, 0)).toBe(false);
  });

  it('never seals twice under one key and nonce: every batch gets a key of its own', () => {
    const cipher = new PageCipher(KEY);
    const keys = Array.from({ length: 1000 }, () => cipher.newBatchKey());
    expect(new Set(keys.map((k) => k.salt.toString('hex'))).size).toBe(1000);
    expect(new Set(keys.map((k) => k.key.toString('hex'))).size).toBe(1000);
    expect(keys.every((k) => k.salt.length === PAGE_CIPHER_SALT_BYTES && !k.key.equals(KEY))).toBe(true);
    // The same page at the same index and version, sent again in another batch: other ciphertext.
    const page = randomPage();
    const first = seal(cipher, keys[0] as BatchKey, page);
    const again = seal(cipher, keys[1] as BatchKey, page);
    expect(first.ciphertext.equals(again.ciphertext)).toBe(false);
    // The key is a function of the migration key and the salt alone, so the receiver finds it.
    expect(new PageCipher(KEY).batchKey((keys[0] as BatchKey).salt).key.equals((keys[0] as BatchKey).key)).toBe(true);
  });

  it('puts no page in clear on the wire and decodes to the pages, their hashes and versions', () => {
    const memory = memoryWithPages(5, [2]);
    const hashes = new PageHashes(5);
    const { auth, frame, pageData } = encryptedBatch(memory, [0, 1, 2, 3, 4], hashes);
    const clear = Buffer.concat([0, 1, 3, 4].map((i) => memory.page(i)));
    expect(pageData.equals(clear)).toBe(true);
    expect(frame.length).toBe(batchSizeBytes('enc-1', 5, 4, true));
    for (const i of [0, 1, 3, 4]) expect(frame.includes(memory.page(i).subarray(64, 4096))).toBe(false);
    for (const i of [0, 1, 3, 4]) expect(frame.includes(pageHash(memory.page(i)))).toBe(false);

    const decoded = decodeBatch(frame, auth, new PageCipher(KEY));
    expect(decoded.flags & BATCH_FLAG_ENCRYPTED).toBe(BATCH_FLAG_ENCRYPTED);
    expect(decoded.pageData.equals(clear)).toBe(true);
    expect(decoded.entries.map((e) => [e.index, e.version, e.zero])).toEqual([
      [0, 1, false],
      [1, 2, false],
      [2, 0, true],
      [3, 4, false],
      [4, 5, false],
    ]);
    for (const e of decoded.entries.filter((x) => !x.zero))
      expect(e.hash.equals(pageHash(memory.page(e.index)))).toBe(true);
    const sent = new PageHashes(5);
    decoded.entries.forEach((e) => sent.set(e.index, e.hash));
    expect(sent.table.equals(hashes.table)).toBe(true);
  });

  it('refuses an encrypted batch with a flipped ciphertext bit, or at a receiver without the cipher', () => {
    const memory = memoryWithPages(2);
    const { auth, frame } = encryptedBatch(memory, [0, 1]);
    const flipped = Buffer.from(frame);
    const at = frame.length - 16 - PAGE_SIZE_BYTES + 100;
    flipped[at] = (flipped[at] as number) ^ 0x80;

    expect(() => decodeBatch(flipped, auth, new PageCipher(KEY))).toThrow(
      expect.objectContaining({ name: 'BatchFormatError', message: expect.stringContaining('encryption tag') }),
    );
    expect(() => decodeBatch(frame, auth)).toThrow(expect.objectContaining({ name: 'BatchFormatError' }));
  });

  it('leaves a batch built without a cipher in clear, as before', () => {
    const memory = memoryWithPages(2);
    const builder = new BatchBuilder(new MessageAuth(KEY, 'clear'), 2);
    builder.begin();
    builder.addPage(0, memory.page(0));
    builder.addPage(1, memory.page(1));
    const { frame } = builder.finish(0, 1, 0);
    expect(frame.length).toBe(batchSizeBytes('clear', 2, 2));
    expect(frame.includes(memory.page(1))).toBe(true);
    expect(decodeBatch(frame, new MessageAuth(KEY, 'clear'), new PageCipher(KEY)).flags).toBe(0);
  });
});
