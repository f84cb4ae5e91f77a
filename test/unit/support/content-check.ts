/**
 * The content half of a final fill's input for tests that fill from a page file written from
 * `source`: an empty destination table, a fresh key, and the source's keyed content digest.
 */
import { randomBytes } from 'node:crypto';
import { MessageAuth } from '../../../data-plane/message-auth';
import { PageHashes } from '../../../data-plane/page-hashes';
import type { GuestMemory } from '../../../vmm/guest-memory';

/** `content` for fillAndVerify, expecting memory to end up equal to `source`'s. */
export function contentCheckOf(
  source: GuestMemory,
  migrationId = 'm1',
): { hashes: PageHashes; auth: MessageAuth; digest: string } {
  const auth = new MessageAuth(randomBytes(32), migrationId);
  const expected = new PageHashes(source.pageCount);
  for (let i = 0; i < source.pageCount; i += 1) expected.record(i, source.page(i));
  return { hashes: new PageHashes(source.pageCount), auth, digest: expected.digest(auth) };
}
