/**
 * Authentication of a migration's messages under its key (migration-key.ts): every page batch,
 * credit grant, control request and reply carries an HMAC-SHA256, truncated to MAC_BYTES, that
 * binds the migration id, the message kind and the message's content (its sequence numbers among
 * it). A receiver drops whatever fails and counts it; nothing here throws on hostile input.
 *
 * JSON messages travel as a sealed envelope `{"kind":…,"body":"<JSON text>","mac":"<base64>"}`: the
 * MAC covers the body's exact text, so no canonical form of JSON is needed.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { MIGRATION_KEY_BYTES } from './migration-key';

/** Length of a message's MAC (bytes): HMAC-SHA256 truncated. */
export const MAC_BYTES = 16;

/** What a message is; part of its MAC, so one kind can never pass for another. */
export type MessageKind = 'batch' | 'credit' | 'sync' | 'sync-reply' | 'final' | 'final-reply' | 'final-ack';

/** A JSON message with its MAC, as it travels on NATS or lies in the page file's mailbox. */
export interface SealedMessage {
  kind: MessageKind;
  /** The message's JSON text. */
  body: string;
  /** base64 of the MAC over the migration id, the kind and `body`. */
  mac: string;
}

const DOMAIN = Buffer.from('ferry-migration-message/1\0', 'utf8');
const SEPARATOR = Buffer.from([0]);

/** MACs and checks the messages of one migration under its key. */
export class MessageAuth {
  private readonly idBytes: Buffer;

  /** Throws RangeError unless `key` is MIGRATION_KEY_BYTES long. */
  constructor(
    private readonly key: Buffer,
    readonly migrationId: string,
  ) {
    if (key.length !== MIGRATION_KEY_BYTES)
      throw new RangeError(`a migration key must be ${MIGRATION_KEY_BYTES} bytes, got ${key.length}`);
    this.idBytes = Buffer.from(migrationId, 'utf8');
  }

  /** The MAC (MAC_BYTES) of a message of `kind` whose content is `parts`, in order. */
  mac(kind: MessageKind, ...parts: Uint8Array[]): Buffer {
    const hmac = createHmac('sha256', this.key).update(DOMAIN).update(this.idBytes).update(SEPARATOR);
    hmac.update(kind).update(SEPARATOR);
    for (const part of parts) hmac.update(part);
    return hmac.digest().subarray(0, MAC_BYTES);
  }

  /** Whether `mac` is the MAC of a message of `kind` with content `parts` (constant time). */
  verify(kind: MessageKind, mac: Uint8Array, ...parts: Uint8Array[]): boolean {
    return mac.length === MAC_BYTES && timingSafeEqual(mac, this.mac(kind, ...parts));
  }

  /** The full HMAC-SHA256 (hex) of `data` under this key: the content digest of a page-hash table. */
  keyedDigest(data: Uint8Array): string {
    return createHmac('sha256', this.key).update(DOMAIN).update(this.idBytes).update(data).digest('hex');
  }

  /** Seals `body` (a JSON value) as a message of `kind`. */
  seal(kind: MessageKind, body: unknown): SealedMessage {
    const text = JSON.stringify(body);
    return { kind, body: text, mac: this.mac(kind, Buffer.from(text, 'utf8')).toString('base64') };
  }

  /** `seal` as bytes to publish. */
  encode(kind: MessageKind, body: unknown): Buffer {
    return Buffer.from(JSON.stringify(this.seal(kind, body)), 'utf8');
  }

  /**
   * The body of `message` (a parsed envelope, e.g. read from the mailbox) if it is a sealed
   * message of one of `kinds` whose MAC checks; undefined for anything else.
   */
  open(kinds: readonly MessageKind[], message: unknown): { kind: MessageKind; body: unknown } | undefined {
    if (typeof message !== 'object' || message === null) return undefined;
    const { kind, body, mac } = message as Partial<Record<keyof SealedMessage, unknown>>;
    if (typeof kind !== 'string' || typeof body !== 'string' || typeof mac !== 'string') return undefined;
    if (!(kinds as readonly string[]).includes(kind)) return undefined;
    const macBytes = Buffer.from(mac, 'base64');
    // Base64 decoding forgives stray characters: only the canonical text of the MAC passes.
    if (macBytes.toString('base64') !== mac) return undefined;
    if (!this.verify(kind as MessageKind, macBytes, Buffer.from(body, 'utf8'))) return undefined;
    try {
      return { kind: kind as MessageKind, body: JSON.parse(body) as unknown };
    } catch {
      return undefined;
    }
  }

  /**
   * `open` of a message's bytes as received; undefined for anything that is not a sealed message
   * in the exact form `encode` gives it (no other key order, spacing or escapes: a message whose
   * bytes were changed is refused even where its meaning was not).
   */
  decode(kinds: readonly MessageKind[], data: Uint8Array): { kind: MessageKind; body: unknown } | undefined {
    const text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8');
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (JSON.stringify(message) !== text) return undefined;
    return this.open(kinds, message);
  }
}
