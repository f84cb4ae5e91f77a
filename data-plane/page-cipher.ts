/**
 * Optional encryption of page data on the wire (`policy.encrypt`): each page of a batch is sealed
 * with AES-256-GCM; its 16-byte tag takes the place of the page's content hash in the batch's entry
 * table (batch-format.ts), which the batch MAC then covers. Ciphertext is as long as plaintext.
 *
 * Keys. A batch's key is `HKDF-SHA256(migrationKey, salt, info = "ferry-page-cipher/1")`, where
 * `salt` is PAGE_CIPHER_SALT_BYTES random bytes drawn for that batch and carried in its header. The
 * HMAC key of message-auth.ts is the migration key itself, used only with HMAC: the HKDF output
 * under a label of its own is a key independent of it, so the cipher never uses the MAC key.
 *
 * Nonces, and why none repeats under one key. A page's nonce is its position in the batch (u32 LE,
 * then eight zero bytes), and its AAD is its index and version. One key seals one batch only, in
 * which positions are distinct, so no (key, nonce) pair is used twice with different plaintext. A
 * page sent twice at the same version (torn by a concurrent write, or resent after a source VMM
 * restarted and its sequence numbers began again) travels in another batch, under another salt and
 * hence another key. Two batches share a key only if their 128-bit random salts collide: with 2^32
 * batches, a chance below 2^-64. No counter needs to survive a crash, which is why a per-sender
 * counter (page index, version or sequence number) was not used as the nonce.
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
/** Length of a page's GCM tag (bytes). */
export const PAGE_TAG_BYTES = 16;

const CIPHER = 'aes-256-gcm';
const NONCE_BYTES = 12;
const INFO = Buffer.from('ferry-page-cipher/1', 'utf8');

/** The key of one batch (see the header): seals and opens the pages at their positions. */
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
   * Encrypts `page` (4 KiB) as the page at `position` of the batch keyed by `key`, with `index` and
   * `version` authenticated alongside; writes the ciphertext to `out` at `outOffset` and the tag
   * (PAGE_TAG_BYTES) to `tagOut` at `tagOffset`. `out` may be `page` itself (in place).
   */
  seal(
    key: BatchKey,
    position: number,
    index: number,
    version: number,
    page: Uint8Array,
    out: Buffer,
    outOffset: number,
    tagOut: Buffer,
    tagOffset: number,
  ): void {
    const cipher = createCipheriv(CIPHER, key.key, nonce(position), { authTagLength: PAGE_TAG_BYTES });
    cipher.setAAD(aad(index, version));
    const head = cipher.update(page);
    const tail = cipher.final();
    head.copy(out, outOffset);
    tail.copy(out, outOffset + head.length);
    cipher.getAuthTag().copy(tagOut, tagOffset);
  }

  /**
   * Decrypts `ciphertext` sealed by `seal` at `position` for `index` and `version` into `out` at
   * `outOffset`. Returns false, leaving `out` unspecified, if the tag does not check (the page, its
   * index, version, position or key was changed).
   */
  open(
    key: BatchKey,
    position: number,
    index: number,
    version: number,
    ciphertext: Uint8Array,
    tag: Uint8Array,
    out: Buffer,
    outOffset: number,
  ): boolean {
    if (tag.length !== PAGE_TAG_BYTES) return false;
    try {
      const decipher = createDecipheriv(CIPHER, key.key, nonce(position), { authTagLength: PAGE_TAG_BYTES });
      decipher.setAAD(aad(index, version));
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

/** The nonce of the page at `position` of a batch: unique within the batch, whose key is its own. */
function nonce(position: number): Buffer {
  const n = Buffer.alloc(NONCE_BYTES);
  n.writeUInt32LE(position >>> 0, 0);
  return n;
}

function aad(index: number, version: number): Buffer {
  const a = Buffer.allocUnsafe(8);
  a.writeUInt32LE(index >>> 0, 0);
  a.writeUInt32LE(version >>> 0, 4);
  return a;
}
