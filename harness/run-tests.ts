/**
 * The test runner behind `npm test` (after infra/setup.sh has built dist/). Runs jest twice: the
 * `unit` project in parallel, then the `integration` project in band (integration tests start
 * real servers). Extra arguments go to both runs; if they contain `--selectProjects`, one run in
 * band with exactly those arguments. Jest's output streams as usual; then leftover test services
 * are swept and the last line printed is exactly `Tests: N passed, N failed` (failed includes
 * suites that failed to run). Exit code 0 only when tests ran and none failed.
 *
 * Under CI (env CI set) jest gets `--forceExit`, so that a test leaking a handle fails loudly in
 * its own output instead of hanging the pipeline.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from '../temporal-config';
import { sweepTestServices } from './test-sweep';

/** Folder (under the project root) where jest's JSON results are written. */
export const RESULTS_DIR = '.ferry';

/** One jest invocation, where its JSON result goes, and extra environment for it. */
interface JestRun {
  args: string[];
  resultFile: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Integration test files that run a second time with the S3 store (FERRY_TEST_STORE=s3): the
 * migration suite and the robustness scenarios, whose guarantees must hold on either store.
 */
export const S3_SUITE_FILES = [
  'migration',
  'network-loss',
  'network-cut',
  'lost-batches',
  'restarts',
  'vmm-crash',
  'switchover-faults',
  'cancel-phases',
] as const;

/** Counts summed over the runs. */
export interface TestTotals {
  passed: number;
  failed: number;
}

function planRuns(extraArgs: readonly string[], resultsDir: string, ci: boolean): JestRun[] {
  const common = ['--passWithNoTests', ...(ci ? ['--forceExit'] : [])];
  const run = (name: string, projectArgs: string[]): JestRun => {
    const resultFile = path.join(resultsDir, name);
    return { args: [...projectArgs, ...common, '--json', `--outputFile=${resultFile}`, ...extraArgs], resultFile };
  };
  if (extraArgs.includes('--selectProjects')) return [run('jest-results.json', ['--runInBand'])];
  return [
    run('jest-results.unit.json', ['--selectProjects', 'unit']),
    run('jest-results.integration.json', ['--selectProjects', 'integration', '--runInBand']),
    {
      ...run('jest-results.integration-s3.json', [
        ...['--selectProjects', 'integration', '--runInBand'],
        ...['--testPathPattern', `/(${S3_SUITE_FILES.join('|')})\\.test\\.js$`],
      ]),
      env: { FERRY_TEST_STORE: 's3' },
    },
  ];
}

function runJest(root: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(root, 'node_modules', 'jest', 'bin', 'jest.js'), ...args], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: 'inherit',
    });
    child.once('error', (error) => {
      process.stderr.write(`cannot run jest: ${error.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => resolve(signal === null ? (code ?? 1) : 1));
  });
}

/** Passed and failed counts from one jest `--json` result file; undefined if missing or unreadable. */
export function readJestTotals(file: string): TestTotals | undefined {
  try {
    const result = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    const count = (key: string): number => (typeof result[key] === 'number' ? (result[key] as number) : 0);
    return {
      passed: count('numPassedTests'),
      failed: count('numFailedTests') + count('numRuntimeErrorTestSuites'),
    };
  } catch {
    return undefined;
  }
}

/** The summary line printed last, e.g. `Tests: 12 passed, 0 failed`. */
export function formatSummary(totals: TestTotals): string {
  return `Tests: ${totals.passed} passed, ${totals.failed} failed`;
}

/** Runs the suites as described above and resolves the process exit code. */
export async function runTests(extraArgs: readonly string[], root: string = projectRoot()): Promise<number> {
  const resultsDir = path.join(root, RESULTS_DIR);
  fs.mkdirSync(resultsDir, { recursive: true });
  const totals: TestTotals = { passed: 0, failed: 0 };
  let jestFailed = false;
  for (const run of planRuns(extraArgs, resultsDir, Boolean(process.env['CI']))) {
    fs.rmSync(run.resultFile, { force: true });
    if (run.env) process.stderr.write(`\nrunning again with ${JSON.stringify(run.env)}\n`);
    const code = await runJest(root, run.args, run.env);
    const runTotals = readJestTotals(run.resultFile);
    if (runTotals === undefined) {
      // jest died before writing results (bad arguments, crash): count the run as one failure.
      process.stderr.write(`jest exited with code ${code} without writing ${run.resultFile}\n`);
      totals.failed += 1;
    } else {
      totals.passed += runTotals.passed;
      totals.failed += runTotals.failed;
    }
    jestFailed ||= code !== 0;
  }
  for (const line of sweepTestServices()) process.stderr.write(`${line}\n`);
  process.stdout.write(`${formatSummary(totals)}\n`);
  return totals.failed > 0 || totals.passed === 0 || jestFailed ? 1 : 0;
}

if (require.main === module) {
  runTests(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.stdout.write(`${formatSummary({ passed: 0, failed: 1 })}\n`);
      process.exitCode = 1;
    },
  );
}
