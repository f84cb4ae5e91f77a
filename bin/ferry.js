#!/usr/bin/env node
// The `ferry` command: runs the compiled CLI (build first with `npm run build` or `npm run setup`).
// ferry needs Node 22 or newer. Started by an older Node (a machine's Node 20 through this file's
// shebang), it runs itself again through infra/node.sh, which picks the Node 24 that setup put in
// the tools venv: same arguments and Node flags, same stdio; the child's exit code is this
// process's, a signal sent here is passed on, and a child killed by a signal kills this process by
// the same signal. FERRY_NODE_REEXEC marks the second run, so it never loops.
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const { spawn } = require('node:child_process');

const MIN_NODE_MAJOR = 22;
const REEXEC_ENV = 'FERRY_NODE_REEXEC';
const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

function runCli() {
  const entry = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
  if (!fs.existsSync(entry)) {
    process.stderr.write('ferry: not built yet; run `npm run setup` (installs, builds and fetches the services)\n');
    process.exit(5);
  }
  require(entry)
    .main(process.argv.slice(2))
    .then((code) => {
      process.exitCode = code;
    });
}

function runOnMaintainedNode() {
  const nodeScript = path.join(__dirname, '..', 'infra', 'node.sh');
  const child = spawn('bash', [nodeScript, ...process.execArgv, __filename, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, [REEXEC_ENV]: '1' },
  });
  const forward = (signal) => child.kill(signal);
  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
  child.once('error', (error) => {
    // No bash (or it cannot start): this Node is all there is.
    for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
    process.stderr.write(`ferry: cannot run infra/node.sh (${error.message}); going on with Node ${process.version}\n`);
    runCli();
  });
  child.once('exit', (code, signal) => {
    for (const s of FORWARDED_SIGNALS) process.off(s, forward);
    if (signal === null) process.exit(code ?? 1);
    process.kill(process.pid, signal);
    // Signals whose default action is not to terminate: report it as a shell would.
    setTimeout(() => process.exit(128 + (os.constants.signals[signal] ?? 0)), 100);
  });
}

// Read once and dropped, so that a ferry started later from this process decides afresh.
const reexeced = process.env[REEXEC_ENV] !== undefined;
delete process.env[REEXEC_ENV];
if (Number(process.versions.node.split('.')[0]) >= MIN_NODE_MAJOR) {
  runCli();
} else if (!reexeced) {
  runOnMaintainedNode();
} else {
  process.stderr.write(
    `ferry: Node ${process.version} is older than ${MIN_NODE_MAJOR}; run \`npm run setup\` to get Node 24\n`,
  );
  runCli();
}
