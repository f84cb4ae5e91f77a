/** The soak report's verdict on forged-message faults and its per-fault totals of rejected messages. */
import { forgeryProblem, forgeryTotals, formatReport, soakPassed, summarize } from '../../soak/report';
import type { SoakRow } from '../../soak/run-migration';

function row(
  fault: string,
  forgedMessages: number | undefined,
  rejectedMessages: number,
  extra: Partial<SoakRow> = {},
): SoakRow {
  return {
    vmId: `soak-${fault}`,
    fault,
    item: forgedMessages === undefined ? 1 : 11,
    moment: '+1ms pre-copy r0',
    missed: false,
    sourceHost: 'h1',
    destinationHost: 'h2',
    encrypted: false,
    outcome: 'completed',
    workflowOutcome: 'completed',
    reason: '',
    runningOn: 'h2',
    totalMs: 100,
    precopyMs: 50,
    corruptedPages: 0,
    forgedMessages,
    rejectedMessages,
    copiesRunning: 1,
    twoCopiesEvents: 0,
    longestNoCopyMs: 0,
    expected: true,
    problems: [],
    ...extra,
  };
}

test('a forging fault that sent nothing, or whose completed migration rejected nothing, is a problem', () => {
  expect(forgeryProblem(0, 0, 'completed')).toMatch(/forged nothing/);
  expect(forgeryProblem(3, 0, 'completed')).toBe('3 forged messages sent, none counted as rejected');
  expect(forgeryProblem(3, 3, 'completed')).toBeUndefined();
  // A migration that did not complete is judged by its outcome, not by its count.
  expect(forgeryProblem(3, 0, 'rolledBack')).toBeUndefined();
});

test('rejected messages are totalled per forged-message fault, missed draws counted, other faults left out', () => {
  const rows = [
    row('forged-sync', 2, 2),
    row('nats-killed', undefined, 0),
    row('forged-sync', 0, 0, { missed: true, moment: 'missed (completed r2)' }),
    row('forged-reply', 2, 2),
  ];
  expect(forgeryTotals(rows)).toEqual([
    { fault: 'forged-sync', migrations: 2, forgedIn: 1, forged: 2, rejected: 2 },
    { fault: 'forged-reply', migrations: 1, forgedIn: 1, forged: 2, rejected: 2 },
  ]);
  const report = summarize(1, [row('none', undefined, 0)], rows, []);
  expect(soakPassed(report)).toBe(true);
  expect(formatReport(report)).toMatch(/^rejected forged-sync +2 of 2 forged \(forged in 1 of 2 migrations\)$/m);
});
