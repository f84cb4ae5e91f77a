import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { makeTestStateDir, sweepTestServices } from '../../harness';
import { isPortAnswering, pickFreePort, serviceStatus, startService, startNatsServer, stopService } from '../../infra';

jest.setTimeout(20_000);

/** A Node one-liner that listens on `port` and, if `stubborn`, ignores SIGTERM. */
function listenerScript(port: number, stubborn: boolean): string[] {
  const ignore = stubborn ? "process.on('SIGTERM', () => undefined);" : '';
  return ['-e', `${ignore} require('net').createServer().listen(${port}, '127.0.0.1')`];
}

describe('managed service process', () => {
  let stateDir: string;

  beforeEach(() => {
    stateDir = makeTestStateDir();
  });

  afterEach(async () => {
    await stopService({ name: 'probe', stateDir, stopGraceMs: 200 });
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  it('reports an early exit with the tail of the service log', async () => {
    const attempt = startService({
      name: 'probe',
      command: '/bin/sh',
      args: ['-c', 'echo "bad config line 3" >&2; exit 3'],
      stateDir,
      port: await pickFreePort(),
      detached: false,
    });
    await expect(attempt).rejects.toMatchObject({ name: 'ServiceStartError', reason: 'exited', service: 'probe' });
    await expect(attempt).rejects.toThrow(/exit code 3[\s\S]*bad config line 3/);
    expect(fs.existsSync(path.join(stateDir, 'probe', 'probe.pid'))).toBe(false);
  });

  it('gives up when the port never opens, and kills what it launched', async () => {
    const port = await pickFreePort();
    const attempt = startService({
      name: 'probe',
      command: '/bin/sleep',
      args: ['30'],
      stateDir,
      port,
      detached: false,
      startTimeoutMs: 500,
    });
    await expect(attempt).rejects.toMatchObject({ name: 'ServiceStartError', reason: 'timeout' });
    expect(serviceStatus({ name: 'probe', stateDir })).toBeUndefined();
  });

  it('escalates to SIGKILL when the service ignores SIGTERM', async () => {
    const port = await pickFreePort();
    const started = await startService({
      name: 'probe',
      command: process.execPath,
      args: listenerScript(port, true),
      stateDir,
      port,
      detached: true,
    });
    expect(started.state).toBe('started');
    const stopped = await stopService({ name: 'probe', stateDir, stopGraceMs: 300 });
    expect(stopped.state).toBe('killed');
    expect(await isPortAnswering(port)).toBe(false);
  });

  it('sweeps the services of a test run that died without stopping them', async () => {
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.once('exit', resolve));
    fs.writeFileSync(path.join(stateDir, 'owner.pid'), `${dead.pid}\n`);
    const port = await pickFreePort();
    await startNatsServer({ stateDir, port, detached: false });
    const swept = sweepTestServices();
    expect(swept.some((line) => line.includes(stateDir))).toBe(true);
    expect(fs.existsSync(stateDir)).toBe(false);
    // SIGKILL is sent, not awaited: the kernel closes the killed server's socket as its exit completes.
    const closedBy = Date.now() + 5_000;
    while ((await isPortAnswering(port)) && Date.now() < closedBy) await new Promise((r) => setTimeout(r, 20));
    expect(await isPortAnswering(port)).toBe(false);
  });
});
