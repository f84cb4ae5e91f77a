/**
 * Optional encryption of page data on the wire (`policy.encrypt`): the pages of a batch are sealed
 * together with AES-256-GCM, as one message whose 16-byte tag travels in the batch's header
 * (batch-format.ts), which the batch MAC covers. The batch's entry table (page indexes, versions,
 * zero flags) is the GCM's additional data. Ciphertext is as long as plaintext.
 *
 * Keys. A batch's key is `HKDF-SHA256(migrationKey, salt, info = "ferry-page-cipher/1")`, where
 * `salt` is PAGE_CIPHER_SALT_BYTES random bytes drawn for that batch and carried in its header. The
 * HMAC key of message-auth.ts is the migration key itself, used only with HMAC: the HKDF output
 * under a label of its own is a key independent of it, so the cipher never uses the MAC key.
 *
 * Nonces, and why none repeats under one key. Every key seals exactly one message (one batch), so
 * its nonce may be fixed (all zeros): no (key, nonce) pair is ever used for two plaintexts. A page
 * sent twice at the same version (torn by a concurrent write, or resent after a source VMM restarted
 * and its sequence numbers began again) travels in another batch, under another salt and hence
 * another key. Two batches share a key only if their 128-bit random salts collide: with 2^32
 * batches, a chance below 2^-64. No counter has to survive a crash, which is why neither the page
 * index and version nor a per-sender counter was used as the nonce. One GCM pass per batch, not
 * per page, also because setting up a cipher costs about as much as sealing a 4 KiB page.
 *
 * What stays visible: the batch header and entry table (page indexes, versions, which pages are
 * zero: zero pages travel as entries without data, as before), and the sizes. The content hash of a
 * page does not travel (an unkeyed hash would let an observer confirm a guessed page); the
 * destination computes it from the plaintext it decrypted. Nothing here throws on hostile input:
 * `open` returns false.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { MIGRATION_KEY_BYTES } from './migration-key';

/** Length of a batch's key salt (bytes), carried in the header of an encrypted batch. */
export const PAGE_CIPHER_SALT_BYTES = 16;
/** Length of a batch's GCM tag (bytes). */
export const PAGE_TAG_BYTES = 16;

const CIPHER = 'aes-256-gcm';
/** The nonce of every key: each key seals one batch only (see the header). */
const NONCE = Buffer.alloc(12);
const INFO = Buffer.from('ferry-page-cipher/1', 'utf8');

/** The key of one batch (see the header). */
export interface BatchKey {
  /** The random salt the key was derived with; the batch carries it. */
  readonly salt: Buffer;
  readonly key: Buffer;
}

/** AES-256-GCM of the pages of one migration under keys derived from its migration key. */
export class PageCipher {
  private lastKey: BatchKey | undefined;

  /** Throws RangeError unless `migrationKey` is MIGRATION_KEY_BYTES long. */
  constructor(private readonly migrationKey: Buffer) {
    if (migrationKey.length !== MIGRATION_KEY_BYTES)
      throw new RangeError(`a migration key must be ${MIGRATION_KEY_BYTES} bytes, got ${migrationKey.length}`);
  }

  /** A fresh key for one batch, under a new random salt. */
  newBatchKey(): BatchKey {
    return this.batchKey(randomBytes(PAGE_CIPHER_SALT_BYTES));
  }

  /** The key of a batch whose header carries `salt` (the last one is kept: a batch's pages share it). */
  batchKey(salt: Uint8Array): BatchKey {
    if (this.lastKey?.salt.equals(salt)) return this.lastKey;
    const copy = Buffer.from(salt);
    const key = Buffer.from(hkdfSync('sha256', this.migrationKey, copy, INFO, 32));
    this.lastKey = { salt: copy, key };
    return this.lastKey;
  }

  /**
   * Encrypts `pages` (the batch's page data) under `key`, with `aad` (the batch's entry table)
   * authenticated alongside; writes the ciphertext to `out` at `outOffset` and returns the tag
   * (PAGE_TAG_BYTES). Call once per key.
   */
  seal(key: BatchKey, aad: Uint8Array, pages: Uint8Array, out: Buffer, outOffset: number): Buffer {
    const cipher = createCipheriv(CIPHER, key.key, NONCE, { authTagLength: PAGE_TAG_BYTES });
    cipher.setAAD(aad);
    const head = cipher.update(pages);
    const tail = cipher.final();
    head.copy(out, outOffset);
    tail.copy(out, outOffset + head.length);
    return cipher.getAuthTag();
  }

  /**
   * Decrypts `ciphertext` sealed by `seal` under `key` with `aad` into `out` at `outOffset`.
   * Returns false, leaving `out` unspecified, if the tag does not check (the pages, the entry
   * table, the tag or the key was changed).
   */
  open(
    key: BatchKey,
    aad: Uint8Array,
    ciphertext: Uint8Array,
    tag: Uint8Array,
    out: Buffer,
    outOffset: number,
  ): boolean {
    if (tag.length !== PAGE_TAG_BYTES) return false;
    try {
      const decipher = createDecipheriv(CIPHER, key.key, NONCE, { authTagLength: PAGE_TAG_BYTES });
      decipher.setAAD(aad);
      decipher.setAuthTag(tag);
      const head = decipher.update(ciphertext);
      const tail = decipher.final();
      head.copy(out, outOffset);
      tail.copy(out, outOffset + head.length);
      return true;
    } catch {
      return false;
    }
  }
}
