/**
 * What failed during a migration and how ferry got past it, derived from the figures the
 * activities report. Pure functions: the workflow calls them, unit tests too.
 */
import type { IncomingStatus, RoundStats } from '../model/protocol';
import type { StoreOutage } from '../store/page-store';
import type { MigrationIncident } from './types';

/**
 * Lane changes and activity retries of the pre-copy rounds, in round order, then the store's
 * outages: `laterOutages` if given (the source's list at the switchover), else the newest round's.
 */
export function roundIncidents(
  rounds: readonly RoundStats[],
  laterOutages?: readonly StoreOutage[],
): MigrationIncident[] {
  const incidents: MigrationIncident[] = [];
  let previousLane: RoundStats['lane'] = 'network';
  for (const r of rounds) {
    const at = `round ${r.round}`;
    if ((r.activityAttempt ?? 1) > 1) {
      const from =
        r.resumedFromPagesSent !== undefined ? ` from its checkpoint at ${r.resumedFromPagesSent} pages sent` : '';
      incidents.push({
        at,
        what: `the source's round activity was retried (attempt ${r.activityAttempt})`,
        recovery: `it rejoined the round still running in the source VMM${from}; nothing was sent twice`,
      });
    }
    if (r.lane === 'store' && previousLane === 'network') {
      incidents.push({
        at,
        what: 'the page stream stopped answering (network lane lost)',
        recovery: 'pages went on into the page file alone; the destination takes them from there',
      });
    } else if (r.lane === 'network' && previousLane === 'store') {
      incidents.push({
        at,
        what: 'the page stream answered again',
        recovery: 'the network lane carries pages again; what it lost meanwhile comes from the page file',
      });
    }
    previousLane = r.lane;
  }
  const outages = laterOutages ?? [...rounds].reverse().find((r) => r.storeOutages)?.storeOutages ?? [];
  return [...incidents, ...outages.map(storeOutageIncident)];
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** One outage of the store as an incident (times in ISO, duration in seconds). */
export function storeOutageIncident(outage: StoreOutage): MigrationIncident {
  const since = new Date(outage.from).toISOString();
  const failed = `${outage.failedUploads} upload${outage.failedUploads === 1 ? '' : 's'} failed`;
  if (outage.to === undefined)
    return {
      at: `store, since ${since}`,
      what: `the store is unreachable: ${outage.reason} (${failed})`,
      recovery: 'the network lane goes on; uploads are retried and the store catches up from guest memory',
    };
  return {
    at: `store, ${since}`,
    what: `the store was unreachable for ${seconds(outage.to - outage.from)}: ${outage.reason} (${failed})`,
    recovery: 'the network lane went on meanwhile; the uploads were retried and the store caught up from guest memory',
  };
}

/** What the destination recovered: lost batches, torn pages, the lane of the handover, retries. */
export function destinationIncidents(received: {
  status?: IncomingStatus | undefined;
  handoverLane?: 'network' | 'store' | undefined;
}): MigrationIncident[] {
  const incidents: MigrationIncident[] = [];
  const status = received.status;
  const final = status?.final;
  if (status && (status.activityAttempt ?? 1) > 1) {
    incidents.push({
      at: 'receiver',
      what: `the destination's receiving activity was retried (attempt ${status.activityAttempt})`,
      recovery: 'it rejoined the receiver still running in the destination VMM',
    });
  }
  if (final && final.gapBatches > 0) {
    incidents.push({
      at: 'stream',
      what: `${final.gapBatches} page batches never arrived over NATS`,
      recovery:
        `the destination read what it lacked from the page file (${final.pagesPrefetched ?? 0} pages while the ` +
        `stream was down, ${final.pagesFromStore} at switchover)`,
    });
  }
  if (final && final.tornPagesRepaired > 0) {
    incidents.push({
      at: 'stream',
      what: `${final.tornPagesRepaired} pages arrived torn (written while they were read)`,
      recovery: 'their final versions came from the page file',
    });
  }
  if (received.handoverLane === 'store') {
    incidents.push({
      at: 'switchover',
      what: 'the final request could not be answered over NATS',
      recovery: "it went through the page file's mailbox",
    });
  }
  return incidents;
}

/**
 * A step that ran again after its first run was lost (attempt > 1): most likely the host agent
 * running it died, and the retry went to the agent that replaced it.
 */
export function retriedStepIncident(at: string, step: string, hostId: string, attempt: number): MigrationIncident {
  return {
    at,
    what: `${step} on host ${hostId} ran again (attempt ${attempt}): its first run was lost, most likely with the host agent`,
    recovery: 'the step is idempotent: the retry took over what the first run had done, and the migration went on',
  };
}

/** The error's message with its causes' messages, skipping empty and repeated ones. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error; e = (e as { cause?: unknown }).cause) {
    if (e.message !== '' && !parts.includes(e.message)) parts.push(e.message);
  }
  return parts.length > 0 ? parts.join(': ') : String(err);
}
