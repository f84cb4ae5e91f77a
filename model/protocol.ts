/**
 * The wire protocol: messages between the host agent and the migration engine inside a VMM (over
 * the VMM's control socket), and between the two VMMs (over NATS). Small JSON only: pages never
 * travel here. Part of the ground floor, so the workflows, the engine and the drivers share it
 * without importing each other.
 */
import type { VcpuStats, Workload } from './guest';
import type { ThrottlePolicy } from './migration-input';

/** How to reach NATS from a host (the engine's connection settings). */
export interface NatsClientConfig {
  /** E.g. `nats://127.0.0.1:4222`. */
  url: string;
  /** The host's credentials file (NatsHostCredentials as JSON); absent, the client connects anonymously. */
  credentialsFile?: string;
  /** TLS: the CA that signed nats-server's certificate; set, the connection must use TLS. */
  tlsCaFile?: string;
}

/** A time the store could not take writes; Date.now() values (ms). */
export interface StoreOutage {
  from: number;
  /** Unset while the outage lasts. */
  to?: number;
  /** The last failure's message. */
  reason: string;
  /** Writes that failed during the outage. */
  failedUploads: number;
}

/** How the source throttles the vCPU during one round (`migration.sendRound`'s `throttle`). */
export interface RoundThrottleInput {
  policy: ThrottlePolicy;
  /** Throttle set at the round's start (percent, 0..99). */
  percent: number;
  /**
   * Whether the source may raise the throttle inside the round when the round so far calls for it
   * (sdps and history, unless the throttle was pinned by request; never in round 0).
   */
  adjustWithinRound: boolean;
}

/** One change of the vCPU throttle, as the source made it. */
export interface ThrottleChange {
  /** Milliseconds since the source started the migration. */
  atMs: number;
  round: number;
  percent: number;
  /** `round` set at a round's start, `sample` inside a round, `request` by an update, `lifted` at stun or rollback. */
  why: 'round' | 'sample' | 'request' | 'lifted';
}

/** The throttle over one round, measured on the vCPU. */
export interface RoundThrottleStats {
  startPercent: number;
  endPercent: number;
  /** Time the vCPU was scheduled and time the throttle descheduled it during the round (ms). */
  runMs: number;
  throttledMs: number;
  /** Page writes of the guest per second while the round ran (each dirties 4 KiB). */
  guestWriteRateBytesPerSec: number;
  /** Changes made during the round (and by requests since the previous round ended). */
  changes: ThrottleChange[];
}

/** Starts the source side (`migration.startOutgoing`). */
export interface OutgoingStartInput {
  migrationId: string;
  /** How this host reaches nats-server (nats-client.ts). */
  nats: NatsClientConfig;
  /** The shared store: a directory path or `s3://bucket/prefix` (see store/open-store.ts). */
  store: string;
  hostId: string;
  /** The host receiving the VM: its id is part of the migration's subjects (subjects.ts). */
  destinationHost: string;
  /** Ownership epoch the source holds at the start; the destination takes `baseEpoch + 1`. */
  baseEpoch: number;
  /** Pages per batch on the stream. */
  batchPages: number;
  /**
   * The migration's key (base64; see migration-key.ts), from the host agent over the VMM's local
   * control socket. Never logged, never in Temporal history.
   */
  key: string;
  /** Encrypt page data on the stream (data-plane/page-cipher.ts); absent, in clear. */
  encrypt?: boolean;
}

/** Starts the destination side (`migration.startIncoming`). */
export interface IncomingStartInput {
  migrationId: string;
  /** How this host reaches nats-server (nats-client.ts). */
  nats: NatsClientConfig;
  /** The shared store: a directory path or `s3://bucket/prefix`. */
  store: string;
  hostId: string;
  /** The host sending the VM: its id is part of the migration's subjects (subjects.ts). */
  sourceHost: string;
  baseEpoch: number;
  /** Batches the receiver lets the sender run ahead. */
  creditWindow: number;
  /**
   * The migration's key (base64; see migration-key.ts), from the host agent over the VMM's local
   * control socket. Never logged, never in Temporal history.
   */
  key: string;
  /**
   * This receiver replaces one whose VMM died mid pre-copy: it reads from the page file everything
   * the file holds at a newer version than its memory, while the stream goes on.
   */
  rebuildFromStore?: boolean;
}

/** Figures of one pre-copy round, as measured by the source. */
export interface RoundStats {
  round: number;
  /** Pages the dirty log held at the start of the round (all pages in round 0). */
  dirtyPagesAtStart: number;
  pagesSent: number;
  zeroPages: number;
  /** Bytes published on the stream, framing included. */
  bytesSent: number;
  durationMs: number;
  throughputBytesPerSec: number;
  /** Distinct pages dirtied while the round ran: what the next round (or switchover) must send. */
  pendingDirtyPages: number;
  /**
   * How long finding those pages took at the round's end (ms). The stun finds the last ones the same
   * way, inside the downtime: a QEMU guest compares its whole memory, the simulated guest reads its
   * dirty log. Absent from a VMM older than this figure.
   */
  stunScanMs?: number;
  dirtyRateBytesPerSec: number;
  /** Bytes sent on the stream that the page file does not yet hold durably. */
  storeLagBytes: number;
  /** `store` once the network lane was given up and pages go to the page file only. */
  lane: 'network' | 'store';
  /** Every time so far the store could not take writes (retried meanwhile); absent if never. */
  storeOutages?: StoreOutage[];
  vcpu: VcpuStats;
  /** The vCPU throttle during the round (absent from a VMM older than throttling). */
  throttle?: RoundThrottleStats;
  /** Attempt of the activity that returned these figures (set by the host agent; > 1 after a retry). */
  activityAttempt?: number;
  /** Pages the round had sent at the heartbeat checkpoint a retried activity continued from. */
  resumedFromPagesSent?: number;
}

/** The source's request to the destination once every page is sent and durable. */
export interface FinalRequest {
  type: 'final';
  finalSeq: number;
  digest: string;
  /** Keyed digest of the content hash of every page as sent (page-hashes.ts): compares content, not crc32s. */
  contentDigest: string;
  /** Wall-clock ms at stun (for the destination's own downtime figure). */
  stunAt: number;
  workload: Workload;
  seed: number;
  /** The stunned guest's device state, base64 (a hypervisor with devices, such as QEMU; see GuestDevices). */
  deviceState?: string;
}

/** Longest device state a final request may carry (base64 characters; QEMU's is ~430 K). */
export const MAX_DEVICE_STATE_BASE64_CHARS = 16 * 1024 * 1024;

/** The destination's answer to `final`. */
export type FinalReply =
  | {
      ok: true;
      /** The source's stun time from the request (wall-clock ms), for the destination's downtime. */
      stunAt: number;
      resumedAt: number;
      digest: string;
      /** The destination's content digest, equal to the request's. */
      contentDigest: string;
      pagesFromStore: number;
      /**
       * Pages read from the page file and applied during pre-copy, while the stream was dead or
       * stalled (absent from a VMM that does not prefetch).
       */
      pagesPrefetched?: number;
      gapBatches: number;
      tornPagesRepaired: number;
      verifyMs: number;
    }
  | { ok: false; reason: string };

/** What the switchover reports to the workflow. */
export interface SwitchoverStats {
  finalPages: number;
  finalBytes: number;
  /** Stun to the destination's confirmation that the guest runs, measured on the source. */
  downtimeMs: number;
  /** Wall-clock ms at stun. */
  stunAt: number;
  finalSendMs: number;
  /** Wait for the final manifest after the last page was sent. */
  storeDurableMs: number;
  /** Bytes the page file did not yet hold durably at stun (it catches up in the background). */
  storeLagBytes: number;
  destination: Extract<FinalReply, { ok: true }>;
  sourceDigest: string;
  /** Messages the source dropped as not authentic or malformed (grants, replies), up to the handover; absent: none. */
  rejectedMessages?: number;
  /** How the final request reached the destination: over NATS or through the store's mailbox. */
  handoverLane: 'network' | 'store';
  /** As in RoundStats, up to the handover. */
  storeOutages?: StoreOutage[];
}

/** State of the destination side, for heartbeats and the result. */
export interface IncomingStatus {
  migrationId: string;
  state: 'receiving' | 'finishing' | 'resumed' | 'failed' | 'aborted';
  appliedSeq: number;
  batches: number;
  bytesReceived: number;
  pagesApplied: number;
  gapBatches: number;
  /** Pages read from the page file and applied while the stream was dead or stalled (see store-prefetch.ts). */
  pagesPrefetched?: number;
  /** Batches and control messages dropped as not authentic or malformed (see message-auth.ts); absent: none. */
  rejectedMessages?: number;
  reason?: string;
  final?: Extract<FinalReply, { ok: true }>;
  /** Attempt of the receiving activity that returned this status (set by the host agent). */
  activityAttempt?: number;
}
