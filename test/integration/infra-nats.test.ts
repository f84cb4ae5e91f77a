import * as fs from 'node:fs';
import * as net from 'node:net';
import { connect } from 'nats';
import { NATS_MAX_PAYLOAD_BYTES } from '../../temporal-config';
import type { TestNats } from '../../harness';
import { makeTestStateDir, startTestNats } from '../../harness';
import { pickFreePort, serviceStatus, startNatsServer, stopNatsServer } from '../../infra';

jest.setTimeout(20_000);

describe('nats-server service', () => {
  let nats: TestNats;

  beforeAll(async () => {
    nats = await startTestNats();
  });

  afterAll(async () => {
    await nats.stop();
  });

  it('carries a 4 MiB message, so max_payload comes from the generated config', async () => {
    expect(NATS_MAX_PAYLOAD_BYTES).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    const nc = await connect({ servers: nats.url });
    try {
      expect(nc.info?.max_payload).toBe(NATS_MAX_PAYLOAD_BYTES);
      const payload = Buffer.alloc(4 * 1024 * 1024, 7);
      const sub = nc.subscribe('infra.test', { max: 1 });
      nc.publish('infra.test', payload);
      for await (const msg of sub) expect(Buffer.from(msg.data).equals(payload)).toBe(true);
    } finally {
      await nc.close();
    }
  });

  it('reports already running on a second start and leaves the running server alone', async () => {
    const before = serviceStatus({ name: 'nats', stateDir: nats.stateDir });
    const again = await startNatsServer({ stateDir: nats.stateDir, port: nats.port, detached: false });
    expect(again.state).toBe('already-running');
    expect(again.message).toContain('already running');
    expect(again.pid).toBe(before?.pid);
  });

  it('comes back on the same port after a crash', async () => {
    nats.kill('SIGKILL');
    await nats.restart();
    const nc = await connect({ servers: nats.url });
    await nc.close();
  });

  it('refuses a port taken by another process, naming the port and the service', async () => {
    const port = await pickFreePort();
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
    const stateDir = makeTestStateDir();
    try {
      const attempt = startNatsServer({ stateDir, port, detached: false });
      await expect(attempt).rejects.toMatchObject({ name: 'PortInUseError', port, service: 'nats' });
      await expect(attempt).rejects.toThrow(`port ${port}`);
    } finally {
      squatter.close();
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  });

  it('stops, and a second stop succeeds saying it was not running', async () => {
    const stateDir = makeTestStateDir();
    try {
      await startNatsServer({ stateDir, port: await pickFreePort(), detached: false });
      expect((await stopNatsServer({ stateDir })).state).toBe('stopped');
      const second = await stopNatsServer({ stateDir });
      expect(second.state).toBe('not-running');
      expect(second.message).toBe('nats is not running');
    } finally {
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
