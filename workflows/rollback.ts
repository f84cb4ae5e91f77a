/**
 * Ending a migration on either side of the resume, each step bounded: the rollback of one that
 * stopped before the guest resumed on the destination, and the cleanup of one after it did.
 *
 * Only hosts the migration touched are asked, each step through the `bounded` preset, which ends
 * it, done or failed, within TIMEOUTS.cleanupStepMs: a host that vanished cannot hold the workflow,
 * and what it leaves undone is reported as an incident with what the operator can do about it.
 * Workflow code (deterministic); call it in a non-cancellable scope.
 */
import { agentLost, hostActivities } from './host-activities';
import { describeError } from './incidents';
import type { MigrationIncident } from './types';

/** The hosts of one migration and what it did to them. */
export interface MigrationHosts {
  ref: { migrationId: string; vmId: string };
  sourceHost: string;
  destinationHost: string;
}

/** Input of `rollBack`. */
export interface RollbackInput extends MigrationHosts {
  /** Which hosts the migration asked to change something (their prepare step was started). */
  touched: { source: boolean; destination: boolean };
  /** Store holding the migration's page file, to remove it; undefined if there is none or it is kept. */
  pageFileStore: string | undefined;
}

/** What a rollback left: where the VM runs, what to add to the reason, and incidents. */
export interface RollbackOutcome {
  /** The host the VM runs on now, or null if no copy could be resumed. */
  runningOn: string | null;
  /** Appended to the migration's reason ('' if the rollback went as planned). */
  reasonSuffix: string;
  incidents: MigrationIncident[];
}

/** Rolls a migration back: the source resumes its guest, the destination drops its side, the page file goes. */
export async function rollBack(input: RollbackInput): Promise<RollbackOutcome> {
  const { ref, sourceHost, destinationHost, touched } = input;
  const source = hostActivities(sourceHost).bounded;
  const destination = hostActivities(destinationHost).bounded;
  const incidents: MigrationIncident[] = [];

  let sourceRuns = true;
  let sourceProblem: string | undefined;
  if (touched.source) {
    try {
      sourceRuns = (await source.rollbackSource(ref)).running;
    } catch (err) {
      sourceRuns = false;
      sourceProblem = describeError(err);
    }
  }
  let destinationResumed = false;
  let destinationAnswered = touched.destination;
  let destinationProblem: string | undefined;
  if (touched.destination) {
    try {
      // A source that runs again holds the VM: the destination need not read the store to settle.
      destinationResumed = (await destination.abortDestination({ ...ref, sourceRuns: sourceRuns && touched.source }))
        .resumed;
    } catch (err) {
      destinationAnswered = false;
      destinationProblem = describeError(err);
      incidents.push({
        at: 'rollback',
        what: `the destination host ${destinationHost} did not abort its side of the migration: ${describeError(err)}`,
        recovery:
          `its reservation of VM ${ref.vmId} may remain: once its agent is back, check with \`ferry vm list\` ` +
          `and remove it with \`ferry vm destroy ${ref.vmId} --host ${destinationHost}\` unless it runs there`,
      });
    }
  }
  // A destination that could not be settled may hold the VM's only copy (its failure is not read
  // as "not resumed", see data-plane/incoming-settle.ts): with no source running either, the VM's
  // state is unknown, and the page file it may need is kept.
  const stateUnknown = destinationProblem !== undefined && !sourceRuns;
  if (input.pageFileStore !== undefined && !stateUnknown) {
    const store = input.pageFileStore;
    const remover = sourceProblem === undefined ? source : destinationAnswered ? destination : undefined;
    const left = await (remover
      ? remover.removeMigrationFiles({ ...ref, store }).then(
          () => undefined,
          (err: unknown) => describeError(err),
        )
      : Promise.resolve('no host that can reach the store answered'));
    if (left !== undefined)
      incidents.push({
        at: 'rollback',
        what: `the migration's page file could not be removed from ${store}: ${left}`,
        recovery: `it takes space until removed: its files are named after migration ${ref.migrationId}`,
      });
  }

  if (stateUnknown)
    return {
      runningOn: null,
      reasonSuffix:
        `; the VM's state is unknown: the destination ${destinationHost} could not be settled ` +
        `(${destinationProblem}), so its paused copy and the page file are kept`,
      incidents,
    };
  if (destinationResumed)
    // The destination took ownership and resumed before the failure reached us: the VM lives
    // there, and the source (fenced by the ownership epoch) stays stunned.
    return { runningOn: destinationHost, reasonSuffix: '; the destination had already resumed the VM', incidents };
  if (!sourceRuns)
    return {
      runningOn: null,
      reasonSuffix: sourceProblem
        ? `; the source VM could not be resumed (${sourceProblem})`
        : '; the source VM could not be resumed',
      incidents,
    };
  return { runningOn: sourceHost, reasonSuffix: '', incidents };
}

/** Input of `cleanUpAfterResume`. */
export interface CleanupInput extends MigrationHosts {
  store: string;
  keepSource: boolean;
  keepPageFile: boolean;
  /**
   * Hosts whose agent is known to be gone (a step there found no agent): their steps are not
   * tried, each would only wait out its bound. Hosts found gone here are added.
   */
  lostHosts: Set<string>;
}

/**
 * Cleanup once the guest runs on the destination: the destination records that it runs the VM,
 * the source is released (destroyed, or kept stunned) and the page file removed. Never throws: the
 * migration has completed whatever fails here, and each failure comes back as an incident.
 */
export async function cleanUpAfterResume(input: CleanupInput): Promise<MigrationIncident[]> {
  const { ref, sourceHost, destinationHost, lostHosts } = input;
  const incidents: MigrationIncident[] = [];
  /** Runs `step` on `hostId` unless its agent is gone; rethrows its failure, noting a lost agent. */
  const onHost = async (hostId: string, step: () => Promise<unknown>): Promise<void> => {
    if (lostHosts.has(hostId)) throw new Error(`not tried: no agent of host ${hostId} answered earlier steps`);
    try {
      await step();
    } catch (err) {
      if (agentLost(err)) lostHosts.add(hostId);
      throw err;
    }
  };
  try {
    await onHost(destinationHost, () => hostActivities(destinationHost).bounded.finishDestination(ref));
  } catch (err) {
    incidents.push({
      at: 'cleanup',
      what: `the destination host ${destinationHost} could not record that it runs VM ${ref.vmId}: ${describeError(err)}`,
      recovery:
        `none needed for the guest, which runs on ${destinationHost}; until its record there says so, ` +
        `\`ferry vm list\` shows it as incoming and a migration from ${destinationHost} is refused`,
    });
  }
  try {
    await onHost(sourceHost, () =>
      hostActivities(sourceHost).bounded.releaseSource({
        ...ref,
        store: input.store,
        keepSource: input.keepSource,
        keepPageFile: input.keepPageFile,
      }),
    );
  } catch (err) {
    incidents.push({
      at: 'cleanup',
      what: `the source host ${sourceHost} could not release the stunned source VM: ${describeError(err)}`,
      recovery:
        `the source copy stays stunned on ${sourceHost}, fenced off by the destination's ownership epoch (it ` +
        `never runs again); remove it with \`ferry vm destroy ${ref.vmId} --host ${sourceHost}\`` +
        (input.keepPageFile ? '' : `, and migration ${ref.migrationId}'s page file from ${input.store}`),
    });
  }
  return incidents;
}
