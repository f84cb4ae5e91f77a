/**
 * The JSON messages of a migration, sealed under its key (message-auth.ts), and their parsers.
 * Each parser returns undefined for anything that is not an authentic, well-formed message of its
 * kind, and never throws: the callers run inside NATS subscription callbacks and mailbox polls.
 *
 * Replies are bound to their request: a `sync-reply` names the `sentSeq` it answers and a
 * `final-reply` the `finalSeq`, so an answer recorded earlier in the same migration does not pass
 * for a later one. A replayed request is harmless: a sync is answered from the receiver's own state
 * and a final request runs once.
 */
import type { MessageAuth, SealedMessage } from './message-auth';
import type { CreditGrant } from './subjects';
import { MAX_DEVICE_STATE_BASE64_CHARS, type FinalReply, type FinalRequest } from '../model/protocol';

/** The source's request to resynchronise: it has published every batch up to `sentSeq`. */
export interface SyncRequest {
  type: 'sync';
  sentSeq: number;
}

/** What arrives on the control subject: a sync or the final request. */
export type ControlRequest = SyncRequest | FinalRequest;

function isSeq(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asGrant(value: unknown): CreditGrant | undefined {
  if (!isRecord(value) || !isSeq(value['grantedSeq']) || !isSeq(value['appliedSeq'])) return undefined;
  return { grantedSeq: value['grantedSeq'], appliedSeq: value['appliedSeq'] };
}

function asFinalRequest(value: unknown): FinalRequest | undefined {
  if (!isRecord(value) || value['type'] !== 'final' || !isSeq(value['finalSeq'])) return undefined;
  if (typeof value['digest'] !== 'string' || typeof value['contentDigest'] !== 'string') return undefined;
  if (typeof value['stunAt'] !== 'number' || typeof value['seed'] !== 'number') return undefined;
  if (!isRecord(value['workload']) || typeof value['workload']['type'] !== 'string') return undefined;
  const deviceState = value['deviceState'];
  if (
    deviceState !== undefined &&
    !(
      typeof deviceState === 'string' &&
      deviceState.length <= MAX_DEVICE_STATE_BASE64_CHARS &&
      /^[A-Za-z0-9+/]*={0,2}$/.test(deviceState)
    )
  )
    return undefined;
  return value as unknown as FinalRequest;
}

function asFinalReply(value: unknown): FinalReply | undefined {
  if (!isRecord(value)) return undefined;
  if (value['ok'] === false) return typeof value['reason'] === 'string' ? (value as FinalReply) : undefined;
  if (value['ok'] !== true) return undefined;
  if (typeof value['digest'] !== 'string' || typeof value['contentDigest'] !== 'string') return undefined;
  for (const field of ['stunAt', 'resumedAt', 'pagesFromStore', 'gapBatches', 'tornPagesRepaired', 'verifyMs'])
    if (typeof value[field] !== 'number') return undefined;
  return value as unknown as FinalReply;
}

/** A credit grant, to publish on the credit subject. */
export function encodeCredit(auth: MessageAuth, grant: CreditGrant): Buffer {
  return auth.encode('credit', grant);
}

/** The grant in `data` if it is an authentic credit grant. */
export function decodeCredit(auth: MessageAuth, data: Uint8Array): CreditGrant | undefined {
  const opened = auth.decode(['credit'], data);
  return opened && asGrant(opened.body);
}

/** A sync request for everything up to `sentSeq`. */
export function encodeSync(auth: MessageAuth, sentSeq: number): Buffer {
  return auth.encode('sync', { type: 'sync', sentSeq } satisfies SyncRequest);
}

/** The final request, sealed: bytes for NATS, or the envelope itself for the page file's mailbox. */
export function sealFinalRequest(auth: MessageAuth, request: FinalRequest): SealedMessage {
  return auth.seal('final', request);
}

/** The request in `data` (bytes from the control subject) if it is an authentic sync or final request. */
export function decodeControl(auth: MessageAuth, data: Uint8Array): ControlRequest | undefined {
  const opened = auth.decode(['sync', 'final'], data);
  if (!opened) return undefined;
  if (opened.kind === 'final') return asFinalRequest(opened.body);
  const body = opened.body;
  return isRecord(body) && body['type'] === 'sync' && isSeq(body['sentSeq'])
    ? { type: 'sync', sentSeq: body['sentSeq'] }
    : undefined;
}

/** The final request in `message` (an envelope read from the mailbox) if it is authentic. */
export function openFinalRequest(auth: MessageAuth, message: unknown): FinalRequest | undefined {
  const opened = auth.open(['final'], message);
  return opened && asFinalRequest(opened.body);
}

/** The answer to the sync for `sentSeq`: the receiver's grant now. */
export function encodeSyncReply(auth: MessageAuth, sentSeq: number, grant: CreditGrant): Buffer {
  return auth.encode('sync-reply', { sentSeq, grant });
}

/** The grant in `data` if it is an authentic answer to the sync for `sentSeq`. */
export function decodeSyncReply(auth: MessageAuth, data: Uint8Array, sentSeq: number): CreditGrant | undefined {
  const opened = auth.decode(['sync-reply'], data);
  if (!opened || !isRecord(opened.body) || opened.body['sentSeq'] !== sentSeq) return undefined;
  return asGrant(opened.body['grant']);
}

/** The answer to the final request for `finalSeq`, sealed (the envelope; `JSON.stringify` it for NATS). */
export function sealFinalReply(auth: MessageAuth, finalSeq: number, reply: FinalReply): SealedMessage {
  return auth.seal('final-reply', { finalSeq, reply });
}

/**
 * The reply in `message` (an envelope, parsed, or its bytes) if it is an authentic answer to the
 * final request for `finalSeq`.
 */
export function openFinalReply(auth: MessageAuth, message: unknown, finalSeq: number): FinalReply | undefined {
  const opened =
    message instanceof Uint8Array ? auth.decode(['final-reply'], message) : auth.open(['final-reply'], message);
  if (!opened || !isRecord(opened.body) || opened.body['finalSeq'] !== finalSeq) return undefined;
  return asFinalReply(opened.body['reply']);
}

/** The destination's acknowledgement, in the mailbox, that it picked up the final request for `finalSeq`. */
export function sealFinalAck(auth: MessageAuth, finalSeq: number): SealedMessage {
  return auth.seal('final-ack', { finalSeq, at: Date.now() });
}

/** Whether `message` is an authentic acknowledgement of the final request for `finalSeq`. */
export function openFinalAck(auth: MessageAuth, message: unknown, finalSeq: number): boolean {
  const opened = auth.open(['final-ack'], message);
  return opened !== undefined && isRecord(opened.body) && opened.body['finalSeq'] === finalSeq;
}
