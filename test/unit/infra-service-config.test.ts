import * as net from 'node:net';
import { NAMESPACE, NATS_MAX_PAYLOAD_BYTES, SEARCH_ATTRIBUTES } from '../../temporal-config';
import { isPortFree, natsConfig, pickFreePort, pickFreePorts, temporalDevServerArgs } from '../../infra';

function flagValues(args: readonly string[], flag: string): string[] {
  return args.flatMap((arg, i) => (arg === flag && args[i + 1] !== undefined ? [args[i + 1] as string] : []));
}

describe('generated nats-server config', () => {
  it('binds loopback only and takes max_payload from temporal-config', () => {
    const config = natsConfig({ stateDir: '/state', port: 4333 });
    expect(config).toContain('host: "127.0.0.1"');
    expect(config).toContain('port: 4333');
    expect(config).toContain(`max_payload: ${NATS_MAX_PAYLOAD_BYTES}`);
    expect(config).toContain(`max_pending: ${64 * 1024 * 1024}`);
    expect(config).not.toMatch(/http|monitor/);
  });

  it('keeps max_pending at least as large as max_payload', () => {
    const config = natsConfig({ stateDir: '/s', port: 1, maxPayloadBytes: 128 << 20, maxPendingBytes: 1 << 20 });
    expect(config).toContain(`max_pending: ${128 << 20}`);
  });
});

describe('Temporal dev server arguments', () => {
  const args = temporalDevServerArgs({ stateDir: '/state', port: 7300, uiPort: 8300 });

  it('binds the frontend and the UI to loopback on the requested ports', () => {
    expect(flagValues(args, '--ip')).toEqual(['127.0.0.1']);
    expect(flagValues(args, '--ui-ip')).toEqual(['127.0.0.1']);
    expect(flagValues(args, '--port')).toEqual(['7300']);
    expect(flagValues(args, '--ui-port')).toEqual(['8300']);
  });

  it('persists to a database in the state dir and creates the ferry namespace', () => {
    expect(flagValues(args, '--db-filename')).toEqual(['/state/temporal/temporal.db']);
    expect(flagValues(args, '--namespace')).toEqual([NAMESPACE]);
  });

  it('registers every search attribute from temporal-config and turns off phoning home', () => {
    const expected = Object.entries(SEARCH_ATTRIBUTES).map(([name, type]) => `${name}=${type}`);
    expect(flagValues(args, '--search-attribute')).toEqual(expected);
    expect(args).toContain('--ui-disable-news-fetch');
    expect(flagValues(args, '--dynamic-config-value')).toContain('frontend.enableServerVersionCheck=false');
  });

  it('drops the UI flags when headless', () => {
    const headless = temporalDevServerArgs({ stateDir: '/s', port: 1, uiPort: 2, headless: true });
    expect(headless).toContain('--headless');
    expect(headless.some((arg) => arg.startsWith('--ui-'))).toBe(false);
  });
});

describe('loopback ports', () => {
  it('sees a port as taken while something listens on it, and free afterwards', async () => {
    const port = await pickFreePort();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    expect(await isPortFree(port)).toBe(false);
    await new Promise((resolve) => server.close(resolve));
    expect(await isPortFree(port)).toBe(true);
  });

  it('picks distinct ports when asked for several', async () => {
    const ports = await pickFreePorts(3);
    expect(new Set(ports).size).toBe(3);
  });
});
