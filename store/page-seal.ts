/**
 * Encryption of pages at rest (`policy.encrypt`): each page the store holds is sealed on its own
 * with AES-256-GCM into a slot of SEALED_SLOT_BYTES, `[nonce 12][tag 16][ciphertext 4096]`, at
 * the page's fixed place (page-file.ts, object-page-layout.ts). A page file is sealed or clear as a
 * whole; its header says which.
 *
 * Keys. One key per migration: `HKDF-SHA256(migrationKey, salt = migration id, info =
 * "ferry-page-store/1")`, independent of the message MAC (which uses the migration key itself) and
 * of the wire cipher's per-batch keys (another label). The store never sees the migration key, nor
 * this one: only ciphertext and the nonces and tags.
 *
 * Nonces. A slot is rewritten each time its page is sent again, and the same page may be written
 * twice at the same version (torn and resent, or after a source VMM restart), so nothing about the
 * page can be the nonce. Each write draws 12 random bytes. NIST SP 800-38D bounds random 96-bit
 * nonces to 2^32 seals per key; a migration of the largest guest ferry accepts (4 Mi pages) would
 * have to send every page a thousand times to get near it.
 *
 * Additional data: the migration id and the page index, so a slot copied to another page, or from
 * another migration's file, fails its tag. A slot whose nonce and tag are all zero was never
 * written (files and chunks are sparse: zero pages are never sent); it reads as a zero page. Any
 * other slot that fails its tag (torn by a write that raced the read, or changed by someone who can
 * write to the store) also reads as zeros, which every reader takes as "not held at any version",
 * and is counted. Nothing here throws on what a slot holds.
 */
import {
  createCipheriv,
  createDecipheriv,
  createSecretKey,
  hkdfSync,
  randomFillSync,
  type KeyObject,
} from 'node:crypto';
import { PAGE_SIZE_BYTES } from '../vmm/guest-memory';

/** Length of a page's nonce (bytes). */
export const SEAL_NONCE_BYTES = 12;
/** Length of a page's GCM tag (bytes). */
export const SEAL_TAG_BYTES = 16;
/** What a sealed slot adds to its page: the nonce and the tag. */
export const SEAL_BYTES = SEAL_NONCE_BYTES + SEAL_TAG_BYTES;
/** Bytes of one sealed page's slot. */
export const SEALED_SLOT_BYTES = SEAL_BYTES + PAGE_SIZE_BYTES;
/** Length of the migration key a sealer is derived from (bytes). */
export const SEAL_KEY_INPUT_BYTES = 32;

const CIPHER = 'aes-256-gcm';
const INFO = Buffer.from('ferry-page-store/1', 'utf8');

/** What opening a slot found. */
export type SlotOpening = 'page' | 'never-written' | 'rejected';

/** Seals and opens the page slots of one migration's page file; see the module comment. */
export class PageSealer {
  /** A KeyObject: a cipher made from one costs a sixth of one made from key bytes (~2 µs, not ~12, here). */
  private readonly key: KeyObject;
  private readonly aad: Buffer;
  /** Slots that failed their tag since the sealer was made. */
  rejectedSlots = 0;

  /** Throws RangeError unless `migrationKey` is SEAL_KEY_INPUT_BYTES long. */
  constructor(
    migrationKey: Buffer,
    readonly migrationId: string,
  ) {
    if (migrationKey.length !== SEAL_KEY_INPUT_BYTES)
      throw new RangeError(`a migration key must be ${SEAL_KEY_INPUT_BYTES} bytes, got ${migrationKey.length}`);
    this.key = createSecretKey(
      Buffer.from(hkdfSync('sha256', migrationKey, Buffer.from(migrationId, 'utf8'), INFO, 32)),
    );
    const id = Buffer.from(migrationId, 'utf8');
    this.aad = Buffer.alloc(id.length + 4);
    id.copy(this.aad);
  }

  /** Seals `page` (4 KiB), page `index` of the file, into `slot` (SEALED_SLOT_BYTES) under a fresh nonce. */
  seal(index: number, page: Uint8Array, slot: Buffer): void {
    randomFillSync(slot, 0, SEAL_NONCE_BYTES);
    this.sealWithNonce(index, page, slot);
  }

  /** Seals `page` into `slot` under the nonce already in the slot's first SEAL_NONCE_BYTES. */
  private sealWithNonce(index: number, page: Uint8Array, slot: Buffer): void {
    const nonce = slot.subarray(0, SEAL_NONCE_BYTES);
    const cipher = createCipheriv(CIPHER, this.key, nonce, { authTagLength: SEAL_TAG_BYTES });
    cipher.setAAD(this.aadOf(index));
    const head = cipher.update(page);
    const tail = cipher.final();
    head.copy(slot, SEAL_BYTES);
    tail.copy(slot, SEAL_BYTES + head.length);
    cipher.getAuthTag().copy(slot, SEAL_NONCE_BYTES);
  }

  /**
   * Opens `slot`, page `index` of the file, into `page` (4 KiB). A slot that was never written, or
   * fails its tag, leaves `page` zero (see the module comment).
   */
  open(index: number, slot: Uint8Array, page: Buffer): SlotOpening {
    const seal = slot.subarray(0, SEAL_BYTES);
    if (seal.every((byte) => byte === 0)) {
      page.fill(0, 0, PAGE_SIZE_BYTES);
      return 'never-written';
    }
    try {
      const decipher = createDecipheriv(CIPHER, this.key, seal.subarray(0, SEAL_NONCE_BYTES), {
        authTagLength: SEAL_TAG_BYTES,
      });
      decipher.setAAD(this.aadOf(index));
      decipher.setAuthTag(seal.subarray(SEAL_NONCE_BYTES));
      // Deciphered into a scratch copy: `page` must not hold unauthenticated bytes if the tag fails.
      const head = decipher.update(slot.subarray(SEAL_BYTES, SEALED_SLOT_BYTES));
      const tail = decipher.final();
      head.copy(page, 0);
      tail.copy(page, head.length);
      return 'page';
    } catch {
      page.fill(0, 0, PAGE_SIZE_BYTES);
      this.rejectedSlots += 1;
      return 'rejected';
    }
  }

  /** Seals `count` pages of `pages` (4 KiB each), pages `indexOf(0..count-1)`, into consecutive slots of `slots`. */
  sealAll(count: number, indexOf: (k: number) => number, pages: Buffer, slots: Buffer): void {
    // The nonces drawn in one call: a call per page would cost a third of the seal itself.
    const nonces = randomFillSync(Buffer.allocUnsafe(count * SEAL_NONCE_BYTES));
    for (let k = 0; k < count; k += 1)
      nonces.copy(slots, k * SEALED_SLOT_BYTES, k * SEAL_NONCE_BYTES, (k + 1) * SEAL_NONCE_BYTES);
    for (let k = 0; k < count; k += 1)
      this.sealWithNonce(
        indexOf(k),
        pages.subarray(k * PAGE_SIZE_BYTES, (k + 1) * PAGE_SIZE_BYTES),
        slots.subarray(k * SEALED_SLOT_BYTES, (k + 1) * SEALED_SLOT_BYTES),
      );
  }

  /** Opens `count` consecutive slots of `slots`, pages firstIndex…, into `pages` (4 KiB each). */
  openAll(firstIndex: number, count: number, slots: Buffer, pages: Buffer): void {
    for (let k = 0; k < count; k += 1)
      this.open(
        firstIndex + k,
        slots.subarray(k * SEALED_SLOT_BYTES, (k + 1) * SEALED_SLOT_BYTES),
        pages.subarray(k * PAGE_SIZE_BYTES, (k + 1) * PAGE_SIZE_BYTES),
      );
  }

  private aadOf(index: number): Buffer {
    this.aad.writeUInt32LE(index, this.aad.length - 4);
    return this.aad;
  }
}

/** Bytes of one page's slot in a file sealed by `sealer`, or in a clear file. */
export function slotBytesOf(sealer: PageSealer | undefined): number {
  return sealer ? SEALED_SLOT_BYTES : PAGE_SIZE_BYTES;
}
