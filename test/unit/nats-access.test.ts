import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { natsConnectionOptions } from '../../data-plane/nats-client';
import { hostInboxPrefix, hostSubjectGrants, migrationSubjects } from '../../data-plane/subjects';
import { natsConfig } from '../../infra';
import { ensureNatsCredentials, hostNatsUsers } from '../../infra/nats-credentials';
import { ferryEnvironment, natsTlsEnvironment } from '../../temporal-config';

describe('migration subjects', () => {
  it('name the source, the destination and the migration', () => {
    expect(migrationSubjects('h1', 'h2', 'm-1')).toEqual({
      pages: 'ferry.h1.h2.m-1.pages',
      credit: 'ferry.h1.h2.m-1.credit',
      control: 'ferry.h1.h2.m-1.control',
    });
  });

  it('refuse an id that would split or widen a subject', () => {
    expect(() => migrationSubjects('rack.h1', 'h2', 'm')).toThrow('source host id cannot be used in a NATS subject');
    expect(() => migrationSubjects('h1', '*', 'm')).toThrow('destination host id');
    expect(() => migrationSubjects('h1', 'h2', 'm>')).toThrow('migration id');
  });

  it('grant a host its source and destination sides and its own inbox only', () => {
    expect(hostSubjectGrants('h1')).toEqual({
      publish: ['ferry.h1.*.*.pages', 'ferry.h1.*.*.control', 'ferry.*.h1.*.credit'],
      subscribe: ['ferry.*.h1.*.pages', 'ferry.*.h1.*.control', 'ferry.h1.*.*.credit', '_INBOX.h1.>'],
      allowResponses: true,
    });
    expect(hostInboxPrefix('h2')).toBe('_INBOX.h2');
  });
});

describe('NATS credentials', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-nats-cred-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('are generated once per host, 0600 in a 0700 folder, and kept by a later run', () => {
    const credentialsDir = path.join(dir, 'credentials', 'nats');
    const [first] = ensureNatsCredentials(credentialsDir, ['h1']);
    const again = ensureNatsCredentials(credentialsDir, ['h1', 'h2']);
    expect(again[0]).toEqual(first);
    expect(again[1]?.user).toBe('host-h2');
    expect(again[1]?.password).not.toBe(first?.password);
    expect(fs.statSync(path.join(credentialsDir, 'h2.json')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(credentialsDir).mode & 0o777).toBe(0o700);
  });

  it("reach nats.js as the host's user, with the host's inbox prefix", () => {
    ensureNatsCredentials(dir, ['h1']);
    const options = natsConnectionOptions(
      { url: 'nats://127.0.0.1:1', credentialsFile: path.join(dir, 'h1.json'), tlsCaFile: '/ca.pem' },
      'h1',
      'test',
    );
    expect(options).toEqual(
      expect.objectContaining({ user: 'host-h1', inboxPrefix: '_INBOX.h1', tls: { caFile: '/ca.pem' } }),
    );
    expect(() => natsConnectionOptions({ url: 'x', credentialsFile: path.join(dir, 'h1.json') }, 'h2', 't')).toThrow(
      "it is host h1's, not h2's",
    );
  });

  it('go into an authorization block of the server config, with TLS when asked', () => {
    const users = hostNatsUsers(ensureNatsCredentials(dir, ['h1']));
    const config = natsConfig({ stateDir: '/s', port: 1, users, tls: { certFile: '/c.pem', keyFile: '/k.pem' } });
    expect(config).toContain('authorization {');
    expect(config).toContain('user: "host-h1"');
    expect(config).toContain(
      'publish: { allow: ["ferry.h1.*.*.pages", "ferry.h1.*.*.control", "ferry.*.h1.*.credit"] }',
    );
    expect(config).toContain('allow_responses: true');
    expect(config).toContain('cert_file: "/c.pem"');
    expect(natsConfig({ stateDir: '/s', port: 1 })).not.toContain('authorization');
  });
});

describe('NATS environment', () => {
  it('puts the credentials under the state dir by default', () => {
    expect(ferryEnvironment({ FERRY_STATE_DIR: '/tmp/x' }).natsCredentialsDir).toBe('/tmp/x/credentials/nats');
  });

  it('reads the TLS files, and refuses a server certificate without its key or the CA', () => {
    expect(natsTlsEnvironment({})).toBeUndefined();
    expect(natsTlsEnvironment({ FERRY_NATS_TLS_CA: '/ca.pem' })).toEqual({ caFile: '/ca.pem' });
    expect(() => natsTlsEnvironment({ FERRY_NATS_TLS_CA: '/ca.pem', FERRY_NATS_TLS_SERVER_CERT: '/c.pem' })).toThrow(
      'set both or neither',
    );
    expect(() => natsTlsEnvironment({ FERRY_NATS_TLS_SERVER_CERT: '/c', FERRY_NATS_TLS_SERVER_KEY: '/k' })).toThrow(
      'need FERRY_NATS_TLS_CA',
    );
  });
});
