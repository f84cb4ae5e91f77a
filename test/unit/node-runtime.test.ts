/**
 * ferry runs on a maintained Node (22 or newer): `npm test` and the other entry points come through
 * infra/node.sh, which picks the tools venv's Node 24 where the machine's Node is older, and
 * bin/ferry.js started by an older Node runs itself again through it.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { projectRoot } from '../../temporal-config';

const ROOT = projectRoot();
const NODE_SH = path.join(ROOT, 'infra', 'node.sh');
const FERRY_BIN = path.join(ROOT, 'bin', 'ferry.js');

function majorOf(version: string): number {
  return Number(version.replace(/^v/, '').split('.')[0]);
}

it('runs the tests on Node 22 or newer', () => {
  expect(majorOf(process.versions.node)).toBeGreaterThanOrEqual(22);
});

describe('the Node that runs ferry', () => {
  let dir: string;
  let toolsDir: string;
  let venvNode: string;

  /** A PATH whose `node` says it is `version`, with the system's directories after it (bash, dirname). */
  function pathWithMachineNode(version: string): string {
    const bin = fs.mkdtempSync(path.join(dir, 'machine-'));
    fs.writeFileSync(path.join(bin, 'node'), `#!/bin/sh\necho v${version}\n`, { mode: 0o755 });
    return [bin, '/usr/local/bin', '/usr/bin', '/bin'].join(path.delimiter);
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-unit-node-runtime-'));
    toolsDir = path.join(dir, 'tools');
    venvNode = path.join(toolsDir, 'venv', 'node', 'bin', 'node');
    fs.mkdirSync(path.dirname(venvNode), { recursive: true });
    fs.symlinkSync(process.execPath, venvNode);
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("picks the tools venv's Node where the machine's Node is older than 22, and puts it first on PATH", () => {
    const env = { PATH: pathWithMachineNode('20.20.2'), FERRY_TOOLS_DIR: toolsDir };
    const chosen = spawnSync('bash', [NODE_SH, '--path'], { env, encoding: 'utf8' });
    expect(chosen.stdout.trim()).toBe(venvNode);
    const ran = spawnSync('bash', [NODE_SH, '-p', 'process.env.PATH.split(":")[0] + " " + process.versions.node'], {
      env,
      encoding: 'utf8',
    });
    expect(ran.stdout.trim()).toBe(`${path.dirname(venvNode)} ${process.versions.node}`);
  });

  it("keeps the machine's Node when it is 22 or newer", () => {
    const env = { PATH: pathWithMachineNode('22.0.0'), FERRY_TOOLS_DIR: toolsDir };
    const chosen = spawnSync('bash', [NODE_SH, '--path'], { env, encoding: 'utf8' });
    expect(chosen.stdout.trim()).toBe(path.join(env.PATH.split(path.delimiter)[0] ?? '', 'node'));
  });

  describe('bin/ferry.js started by Node 20', () => {
    let preload: string;
    let runsLog: string;

    /**
     * Starts bin/ferry.js on this Node made to report 20.0.0 by a preload (`-r`, which the re-run
     * keeps as a Node flag). The preload logs each run: whether it is the re-run, and the Node's argv0.
     */
    function startFerry(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
      return spawn(process.execPath, ['-r', preload, FERRY_BIN, ...args], {
        env: {
          ...process.env,
          PATH: pathWithMachineNode('20.20.2'),
          FERRY_TOOLS_DIR: toolsDir,
          RUNS_LOG: runsLog,
          ...extraEnv,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    }

    async function outcome(child: ReturnType<typeof startFerry>) {
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const [code, signal] = (await new Promise((resolve) => child.once('exit', (...exit) => resolve(exit)))) as [
        number | null,
        NodeJS.Signals | null,
      ];
      return { code, signal, stdout, stderr };
    }

    function runs(): { reexec: boolean; argv0: string; pid: number }[] {
      return fs
        .readFileSync(runsLog, 'utf8')
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { reexec: boolean; argv0: string; pid: number });
    }

    beforeEach(() => {
      preload = path.join(dir, 'old-node.js');
      runsLog = path.join(dir, 'runs.log');
      fs.writeFileSync(
        preload,
        `const reexec = process.env.FERRY_NODE_REEXEC !== undefined;
require('node:fs').appendFileSync(process.env.RUNS_LOG, JSON.stringify({ reexec, argv0: process.argv0, pid: process.pid }) + '\\n');
if (!reexec) Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '20.0.0' } });
if (reexec && process.env.HANG) { process.stdout.write('hanging\\n'); setInterval(() => {}, 1000); }
`,
      );
    });

    it("runs the CLI again on the venv's Node, with the same arguments, output and exit code", async () => {
      const help = await outcome(startFerry(['--help']));
      expect(help).toMatchObject({ code: 0, signal: null });
      expect(help.stdout).toContain('Usage: ferry [options] [command]');
      expect(runs()).toEqual([
        expect.objectContaining({ reexec: false }),
        expect.objectContaining({ reexec: true, argv0: venvNode }),
      ]);
      const unknown = await outcome(startFerry(['no-such-command']));
      expect(unknown).toMatchObject({ code: 2, signal: null });
      expect(unknown.stderr).toContain('unknown command "no-such-command"');
    });

    it('passes a signal on to the CLI, and ends by that signal when the CLI does', async () => {
      const child = startFerry(['--help'], { HANG: '1' });
      const ended = outcome(child);
      await new Promise<void>((resolve) =>
        child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('hanging') && resolve()),
      );
      child.kill('SIGTERM');
      expect(await ended).toMatchObject({ code: null, signal: 'SIGTERM' });
      const cli = runs().find((run) => run.reexec);
      expect(() => process.kill(cli?.pid ?? 0, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    });
  });
});
