import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatSummary, readJestTotals } from '../../harness/run-tests';

describe('test run summary', () => {
  let dir: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-unit-run-tests-'));
  });

  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('counts suites that failed to run as failures', () => {
    const file = path.join(dir, 'results.json');
    fs.writeFileSync(file, JSON.stringify({ numPassedTests: 7, numFailedTests: 2, numRuntimeErrorTestSuites: 1 }));
    expect(readJestTotals(file)).toEqual({ passed: 7, failed: 3 });
  });

  it('has no totals when jest wrote no results', () => {
    expect(readJestTotals(path.join(dir, 'missing.json'))).toBeUndefined();
  });

  it('prints the summary line in the exact CI format', () => {
    expect(formatSummary({ passed: 12, failed: 0 })).toBe('Tests: 12 passed, 0 failed');
  });
});
