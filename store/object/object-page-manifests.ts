/**
 * Manifests and the completion mark of one migration on an object store, in the binary format of
 * manifest-format.ts (which carries its own crc32, so a manifest read whole is checked whatever the
 * adapter did). A PUT replaces an object atomically, so a reader sees an old manifest or the new
 * one whole, never part of one; the round manifest of a round under way is simply put again.
 *
 * The newest round manifest is the one with the highest round number; its stamp is its key and
 * etag, so a manifest replaced within its round gets a new stamp (unless its bytes are the same).
 */
import { PageStoreError } from '../errors';
import { decodeManifest, encodeManifest, type Manifest } from '../manifest-format';
import { completeKey, manifestKey, roundManifestPrefix } from './object-page-layout';
import type { ObjectStore } from './object-store';
import type { NewestRoundManifest } from '../page-store';

/** The manifests of one migration. Every method throws PageStoreError naming the migration and the key. */
export class ObjectPageManifests {
  constructor(
    private readonly objects: ObjectStore,
    private readonly migrationId: string,
  ) {}

  /** Puts `manifest` (round-<n>, replacing an earlier one of that round, or final). */
  async write(manifest: Manifest): Promise<void> {
    const key = manifestKey(this.migrationId, manifest);
    await this.wrap(`cannot write ${manifest.final ? 'the final' : `round ${manifest.round}'s`} manifest`, key, () =>
      this.objects.put(key, encodeManifest(manifest)),
    );
  }

  /** The final manifest, or undefined if it has not been written. */
  async readFinal(): Promise<Manifest | undefined> {
    const key = manifestKey(this.migrationId, { round: 0, final: true });
    return this.wrap('cannot read the final manifest', key, async () => {
      const stored = await this.objects.get(key);
      return stored && decodeManifest(stored.body);
    });
  }

  /** The newest round manifest unless there is none or its stamp is `seenStamp` (then not read). */
  async readNewestRound(seenStamp?: string): Promise<NewestRoundManifest | undefined> {
    const prefix = roundManifestPrefix(this.migrationId);
    const keys = await this.wrap('cannot list the round manifests', prefix, () => this.objects.list(prefix));
    let key: string | undefined;
    for (const k of keys) {
      const round = k.slice(prefix.length);
      if (/^\d+$/.test(round) && (key === undefined || Number(round) > Number(key.slice(prefix.length)))) key = k;
    }
    if (key === undefined) return undefined;
    const newest = key;
    return this.wrap('cannot read the newest round manifest', newest, async () => {
      const info = await this.objects.head(newest);
      if (info === undefined || `${newest}@${info.etag}` === seenStamp) return undefined;
      // The stamp is the etag of the bytes read: replaced after the head, the manifest read is the
      // newer one, and a later call sees its stamp and skips it.
      const stored = await this.objects.get(newest);
      return stored && { manifest: decodeManifest(stored.body), stamp: `${newest}@${stored.etag}` };
    });
  }

  /** Syncs versions from what the manifests say the store holds: the newest round's and the final one. */
  async loadInto(versions: Uint32Array): Promise<void> {
    const newest = await this.readNewestRound();
    const final = await this.readFinal();
    for (const manifest of [newest?.manifest, final]) {
      manifest?.indexes.forEach((index, k) => {
        const version = manifest.versions[k] as number;
        if (index < versions.length && version > (versions[index] as number)) versions[index] = version;
      });
    }
  }

  /** Puts the completion mark (an ISO time). */
  async markComplete(): Promise<void> {
    const key = completeKey(this.migrationId);
    await this.wrap('cannot mark the page file complete', key, () =>
      this.objects.put(key, Buffer.from(new Date().toISOString())),
    );
  }

  /** Heads the completion mark every `pollMs` for up to `timeoutMs`; resolves whether it appeared. */
  async waitForComplete(timeoutMs: number, pollMs: number): Promise<boolean> {
    const key = completeKey(this.migrationId);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.wrap('cannot look for the completion mark', key, () => this.objects.head(key));
      if (info !== undefined) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  private async wrap<T>(message: string, key: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new PageStoreError(`${message}: ${reason}`, {
        migrationId: this.migrationId,
        path: `${this.objects.location} ${key}`,
        cause: error,
      });
    }
  }
}
