/**
 * The soak's forged-message faults (issue 11): at a random moment of the pre-copy, a forger on the
 * real nats-server (soak/forger.ts) publishes on the migration's subjects what a host never would:
 * a `sync` with a huge sentSeq, a `final`, credit grants, malformed control messages, a garbage
 * batch, `{ok:true}` answers to the source's control requests, or a batch replayed from an earlier
 * migration of the soak. Every one must be dropped and counted as rejected, and the migration
 * must complete as if nothing had been sent.
 */
import { migrationSubjects, type MigrationSubjects } from '../data-plane/subjects';
import { atRandomMoment, type FaultContext, type SoakFault } from './faults';
import {
  answerControlRequests,
  forgedCreditMessages,
  forgedFinalMessages,
  forgedSyncMessages,
  garbageBatch,
  malformedControlMessages,
  type ForgedAnswers,
} from './forger';
import { incomingMigrationId } from './vmm-probe';

/** Forgeries land in the pre-copy only: that is where a forger would gain from them. */
const PRECOPY: readonly string[] = ['pre-copy'];

/** The subjects of the migration of `ctx`, found through the destination's incoming migration. */
async function subjectsOf(ctx: FaultContext): Promise<MigrationSubjects> {
  const { cluster, destinationHost, vmId, workflowId } = ctx;
  const migrationId = await incomingMigrationId(cluster.env, destinationHost, vmId, workflowId);
  if (migrationId === undefined) throw new Error(`no incoming migration of ${workflowId} on ${destinationHost}`);
  return migrationSubjects(ctx.sourceHost, destinationHost, migrationId);
}

/** A fault that publishes `messages(ctx)` on the migration's `subject` once, mid pre-copy. */
function publishing(
  name: string,
  subject: keyof MigrationSubjects,
  messages: (ctx: FaultContext) => Uint8Array[],
): SoakFault {
  return {
    name,
    item: 11,
    expected: ['completed'],
    hook: false,
    forges: true,
    whileFlowing: (ctx) =>
      atRandomMoment(
        ctx,
        name,
        async () => {
          const [forger, subjects] = await Promise.all([ctx.forger(), subjectsOf(ctx)]);
          const batch = messages(ctx);
          for (const data of batch) forger.publish(subjects[subject], data);
          await forger.flush();
          ctx.forged.messages += batch.length;
        },
        PRECOPY,
      ),
  };
}

/** The forged answers of each migration under the forged-reply fault, until it ends. */
const answering = new WeakMap<FaultContext, ForgedAnswers>();

/** Every forged-message fault of the soak. */
export const FORGERY_FAULTS: readonly SoakFault[] = [
  publishing('forged-sync', 'control', () => forgedSyncMessages()),
  publishing('forged-final', 'control', () => forgedFinalMessages()),
  publishing('forged-credit', 'credit', () => forgedCreditMessages()),
  publishing('malformed-control', 'control', () => malformedControlMessages()),
  publishing('garbage-batch', 'pages', () => [garbageBatch()]),
  publishing('replayed-batch', 'pages', (ctx) => {
    if (ctx.earlierBatch === undefined) throw new Error('no batch was recorded from an earlier migration');
    return [ctx.earlierBatch.data];
  }),
  {
    name: 'forged-reply',
    item: 11,
    expected: ['completed'],
    hook: false,
    forges: true,
    // From its moment on, the forger answers each of the source's control requests at once.
    whileFlowing: (ctx) =>
      atRandomMoment(
        ctx,
        'forged-reply',
        async () => {
          const [forger, subjects] = await Promise.all([ctx.forger(), subjectsOf(ctx)]);
          answering.set(ctx, answerControlRequests(forger, subjects.control));
          await forger.flush();
        },
        PRECOPY,
      ),
    afterEnd: async (ctx) => {
      const answers = answering.get(ctx);
      if (answers === undefined) return;
      answers.stop();
      answering.delete(ctx);
      ctx.forged.messages += answers.replies;
    },
  },
];
