import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveBinary } from '../../infra';

function fakeExecutable(dir: string, name: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, '#!/bin/sh\n', { mode: 0o755 });
  return file;
}

describe('resolveBinary', () => {
  let root: string;

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-unit-binaries-'));
  });

  afterEach(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('prefers the tools venv copy over one on PATH', () => {
    const venvCopy = fakeExecutable(path.join(root, 'tools', 'venv', 'bin'), 'nats-server');
    fakeExecutable(path.join(root, 'path-bin'), 'nats-server');
    const env = { FERRY_TOOLS_DIR: path.join(root, 'tools'), PATH: path.join(root, 'path-bin') };
    expect(resolveBinary('nats-server', env)).toBe(venvCopy);
  });

  it('falls back to PATH when the venv lacks the binary', () => {
    const onPath = fakeExecutable(path.join(root, 'path-bin'), 'temporal');
    const searchPath = ['/nonexistent', path.join(root, 'path-bin')].join(path.delimiter);
    const env = { FERRY_TOOLS_DIR: path.join(root, 'tools'), PATH: searchPath };
    expect(resolveBinary('temporal', env)).toBe(onPath);
  });

  it('names the binary and says to run npm run setup when it is nowhere', () => {
    const env = { FERRY_TOOLS_DIR: path.join(root, 'tools'), PATH: path.join(root, 'empty') };
    expect(() => resolveBinary('temporal-test-server', env)).toThrow(
      expect.objectContaining({ name: 'BinaryNotFoundError', binary: 'temporal-test-server' }),
    );
    expect(() => resolveBinary('temporal-test-server', env)).toThrow(/temporal-test-server.*npm run setup/);
  });

  it('skips files that are not executable', () => {
    const dir = path.join(root, 'tools', 'venv', 'bin');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'nats-server'), 'not a program', { mode: 0o644 });
    const env = { FERRY_TOOLS_DIR: path.join(root, 'tools'), PATH: '' };
    expect(() => resolveBinary('nats-server', env)).toThrow(expect.objectContaining({ name: 'BinaryNotFoundError' }));
  });
});
