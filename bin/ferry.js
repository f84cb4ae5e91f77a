#!/usr/bin/env node
// The `ferry` command: runs the compiled CLI (build first with `npm run build` or `npm run setup`).
const path = require('node:path');
const fs = require('node:fs');
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
