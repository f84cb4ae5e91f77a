/**
 * The page store on a shared directory (EFS, NFS, or a local folder on one machine): one page file
 * per migration at fixed offsets (page-file.ts), manifests and mailbox messages as files written
 * durably, and ownership epochs created with link(2), which fails if the epoch exists
 * (ownership.ts). The writer keeps the batches it is handed until they are written, so it never
 * reads guest memory itself.
 */
import { PageFile, assertStoreWritable, removeMigrationFiles } from './page-file';
import * as ownership from './ownership';
import { postMessage, readMessage } from './mailbox';
import { readDirectoryVmHistory, writeDirectoryVmHistory, type VmHistoryRecord } from '../vm-history';
import type {
  OwnershipRecord,
  PageFile as PageFileApi,
  PageFileHeader,
  PageFileKey,
  PageSource,
  PageStore,
  PreparedClaim,
} from '../page-store';

/** The page store in directory `dir`. */
export class DirectoryPageStore implements PageStore {
  readonly location: string;

  /** `dir` is an absolute path; `ref` what the user named (default `dir`). */
  constructor(
    readonly dir: string,
    readonly ref: string = dir,
  ) {
    this.location = dir;
  }

  assertWritable(): Promise<void> {
    return assertStoreWritable(this.dir);
  }

  createPageFile(
    header: Omit<PageFileHeader, 'sealed'>,
    _source?: PageSource,
    key?: PageFileKey,
  ): Promise<PageFileApi> {
    return PageFile.create(this.dir, header, key);
  }

  openPageFile(migrationId: string, key?: PageFileKey): Promise<PageFileApi> {
    return PageFile.open(this.dir, migrationId, key);
  }

  removeMigration(migrationId: string): Promise<void> {
    return removeMigrationFiles(this.dir, migrationId);
  }

  postMessage(migrationId: string, name: string, body: unknown): Promise<void> {
    return postMessage(this.dir, migrationId, name, body);
  }

  readMessage<T>(migrationId: string, name: string): Promise<T | undefined> {
    return readMessage<T>(this.dir, migrationId, name);
  }

  readOwner(vmId: string): Promise<OwnershipRecord | undefined> {
    return ownership.readOwner(this.dir, vmId);
  }

  async prepareClaim(claim: Omit<OwnershipRecord, 'at'>): Promise<PreparedClaim> {
    const prepared = await ownership.prepareClaim(this.dir, claim);
    return { record: prepared.record, token: prepared.tmpPath };
  }

  commitClaim(prepared: PreparedClaim): Promise<{ won: boolean; record: OwnershipRecord }> {
    return ownership.commitClaim(this.onDisk(prepared));
  }

  discardClaim(prepared: PreparedClaim): Promise<void> {
    return ownership.discardClaim(this.onDisk(prepared));
  }

  releaseOwnership(vmId: string, hostId: string): Promise<boolean> {
    return ownership.releaseOwnership(this.dir, vmId, hostId);
  }

  readVmHistory(vmId: string): Promise<VmHistoryRecord | undefined> {
    return readDirectoryVmHistory(this.dir, vmId);
  }

  writeVmHistory(record: VmHistoryRecord): Promise<void> {
    return writeDirectoryVmHistory(this.dir, record);
  }

  close(): void {}

  /** The claim as ownership.ts wrote it; throws for a claim this store did not prepare. */
  private onDisk(prepared: PreparedClaim): ownership.PreparedClaim {
    if (prepared.token === undefined) throw new Error(`claim on epoch ${prepared.record.epoch} was not prepared here`);
    return { storeDir: this.dir, record: prepared.record, tmpPath: prepared.token };
  }
}
