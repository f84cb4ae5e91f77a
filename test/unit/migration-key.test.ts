import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deriveMigrationKey, loadClusterSecret, newKeyNonce } from '../../data-plane/migration-key';
import { MessageAuth } from '../../data-plane/message-auth';
import { decodeControl, decodeCredit, encodeCredit, encodeSync } from '../../data-plane/control-messages';
import { ClusterSecretError } from '../../data-plane/errors';
import { toFailure } from '../../activities/host-context';

describe('migration keys', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-key-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('creates the cluster secret once, 0600, and every later reader gets the same bytes', () => {
    const file = path.join(dir, 'state', 'cluster.key');
    const first = loadClusterSecret(file);
    expect(first.length).toBe(32);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(loadClusterSecret(file).equals(first)).toBe(true);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['cluster.key']);
  });

  it('refuses a cluster secret that others can read, or that is too short, naming the file', () => {
    const file = path.join(dir, 'cluster.key');
    fs.writeFileSync(file, Buffer.alloc(32, 1), { mode: 0o644 });
    fs.chmodSync(file, 0o644);
    expect(() => loadClusterSecret(file)).toThrow(expect.objectContaining({ name: 'ClusterSecretError' }));
    fs.writeFileSync(file, Buffer.alloc(8, 1));
    fs.chmodSync(file, 0o600);
    expect(() => loadClusterSecret(file)).toThrow(`cluster secret: the cluster secret ${file} holds 8 bytes`);
  });

  it('derives the same key on both hosts from the secret and the nonce, and another key for another nonce or migration', () => {
    const secret = loadClusterSecret(path.join(dir, 'cluster.key'));
    const nonce = newKeyNonce();
    const key = deriveMigrationKey(secret, nonce, 'm1');
    expect(deriveMigrationKey(Buffer.from(secret), nonce, 'm1').equals(key)).toBe(true);
    expect(deriveMigrationKey(secret, newKeyNonce(), 'm1').equals(key)).toBe(false);
    expect(deriveMigrationKey(secret, nonce, 'm2').equals(key)).toBe(false);
    expect(() => deriveMigrationKey(secret, 'short', 'm1')).toThrow(
      expect.objectContaining({ name: 'ClusterSecretError' }),
    );
    expect(() => deriveMigrationKey(secret, undefined as unknown as string, 'm1')).toThrow(
      expect.objectContaining({ name: 'ClusterSecretError' }),
    );
  });

  it('makes a missing or untrusted cluster secret a non-retryable activity failure', () => {
    expect(toFailure(new ClusterSecretError('x'))).toMatchObject({
      type: 'ClusterSecretUnavailable',
      nonRetryable: true,
    });
  });

  it('binds a message to its migration, its key and its kind', () => {
    const key = deriveMigrationKey(Buffer.alloc(32, 3), newKeyNonce(), 'm1');
    const auth = new MessageAuth(key, 'm1');
    const grant = encodeCredit(auth, { grantedSeq: 9, appliedSeq: 1 });
    expect(decodeCredit(auth, grant)).toEqual({ grantedSeq: 9, appliedSeq: 1 });
    expect(decodeCredit(new MessageAuth(key, 'm2'), grant)).toBeUndefined();
    expect(decodeCredit(new MessageAuth(Buffer.alloc(32, 4), 'm1'), grant)).toBeUndefined();
    // A grant is not a control request, even with a valid MAC.
    expect(decodeControl(auth, grant)).toBeUndefined();
    expect(decodeControl(auth, encodeSync(auth, 5))).toEqual({ type: 'sync', sentSeq: 5 });
    expect(decodeControl(auth, Buffer.from('{"type":"sync","sentSeq":5}'))).toBeUndefined();
  });
});
