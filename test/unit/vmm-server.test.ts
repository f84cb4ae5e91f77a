import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { VmmHandler } from '../../vmm/extensions';
import { VmmClient } from '../../vmm/vmm-client';
import { startVmmServer } from '../../vmm/vmm-server';
import type { VmmServer } from '../../vmm/vmm-server';

describe('VMM control channel', () => {
  let dir: string;
  let server: VmmServer;
  let client: VmmClient;
  let releaseSlow: () => void = () => undefined;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ferry-vmm-server-'));
    const slowDone = new Promise<void>((resolve) => {
      releaseSlow = resolve;
    });
    const handlers: Record<string, VmmHandler> = {
      echo: async (params) => params,
      slow: async () => {
        await slowDone;
        return 'slow done';
      },
      fail: async () => {
        const err = new Error('disk on fire');
        err.name = 'PageStoreError';
        throw err;
      },
      never: () => new Promise(() => undefined),
    };
    server = await startVmmServer({ socketPath: path.join(dir, 'v.sock'), vmId: 'v1', handlers, log: () => undefined });
    client = await VmmClient.connect(path.join(dir, 'v.sock'), { vmId: 'v1' });
  });

  afterEach(async () => {
    releaseSlow();
    client.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers other calls while a long handler is still running', async () => {
    const slow = client.call('slow', undefined, { timeoutMs: 0 });
    await expect(client.call('echo', { n: 1 })).resolves.toEqual({ n: 1 });
    const other = await VmmClient.connect(path.join(dir, 'v.sock'));
    await expect(other.call('echo', [2])).resolves.toEqual([2]);
    other.close();
    releaseSlow();
    await expect(slow).resolves.toBe('slow done');
  });

  it('carries the remote error name and message to the caller', async () => {
    await expect(client.call('fail')).rejects.toMatchObject({
      name: 'VmmCallError',
      kind: 'remote',
      method: 'fail',
      vmId: 'v1',
      remoteName: 'PageStoreError',
      message: 'VMM call failed [vm=v1, method=fail]: PageStoreError: disk on fire',
    });
    await expect(client.call('nope')).rejects.toMatchObject({ remoteName: 'VmmMethodNotFoundError' });
    await expect(client.call('toString')).rejects.toMatchObject({ remoteName: 'VmmMethodNotFoundError' });
  });

  it('times a call out, and fails pending calls when the connection closes', async () => {
    await expect(client.call('never', undefined, { timeoutMs: 50 })).rejects.toMatchObject({ kind: 'timeout' });
    const pending = client.call('never', undefined, { timeoutMs: 0 });
    client.close();
    await expect(pending).rejects.toMatchObject({ kind: 'disconnected' });
    await expect(client.call('echo')).rejects.toMatchObject({ kind: 'disconnected' });
  });

  it('refuses to start on a socket a live server owns, and reports a missing socket on connect', async () => {
    await expect(
      startVmmServer({ socketPath: path.join(dir, 'v.sock'), vmId: 'v2', handlers: {}, log: () => undefined }),
    ).rejects.toMatchObject({ name: 'SocketInUseError' });
    await expect(VmmClient.connect(path.join(dir, 'missing.sock'), { vmId: 'v9' })).rejects.toMatchObject({
      name: 'VmmConnectError',
      vmId: 'v9',
    });
  });
});
