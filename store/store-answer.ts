/**
 * Asking the store a question whose answer decides the fate of a VM copy (was the final request
 * posted, did an ownership claim land), where an error must never be read as "no": the question is
 * asked again, with a backoff doubling from DEFAULT_ANSWER_INITIAL_DELAY_MS to
 * DEFAULT_ANSWER_MAX_DELAY_MS, until the store answers or DEFAULT_ANSWER_LIMIT_MS have passed;
 * then StoreUndecidedError, so that the caller keeps every copy and says the VM's state is unknown.
 */
import { StoreUndecidedError } from './errors';

/** First delay before asking again (ms); it doubles each time. */
export const DEFAULT_ANSWER_INITIAL_DELAY_MS = 50;
/** Longest delay between two attempts (ms). */
export const DEFAULT_ANSWER_MAX_DELAY_MS = 1_000;
/**
 * How long a question is asked again before the caller gives up and reports the VM's state as
 * unknown (ms): inside the 30 s of a short activity, and longer than a SeaweedFS restart (~3 s).
 */
export const DEFAULT_ANSWER_LIMIT_MS = 20_000;

/** How `untilAnswered` retries; all optional. */
export interface AnswerOptions {
  /** Default DEFAULT_ANSWER_INITIAL_DELAY_MS. */
  initialDelayMs?: number;
  /** Default DEFAULT_ANSWER_MAX_DELAY_MS. */
  maxDelayMs?: number;
  /** No attempt starts after this long (ms); default DEFAULT_ANSWER_LIMIT_MS. */
  limitMs?: number;
  /** Called after each failed attempt, e.g. to log it. */
  onError?: (error: unknown, attempt: number) => void;
  /** Whether an error means the store did not answer (default: every error); others are rethrown at once. */
  retryIf?: (error: unknown) => boolean;
}

/**
 * Runs `ask` until it resolves; returns its answer. Throws StoreUndecidedError naming `question`,
 * with the last error as cause, once no further attempt may start within the limit.
 */
export async function untilAnswered<T>(
  question: string,
  ask: () => Promise<T>,
  options: AnswerOptions = {},
): Promise<T> {
  const initialDelayMs = options.initialDelayMs ?? DEFAULT_ANSWER_INITIAL_DELAY_MS;
  const maxDelayMs = options.maxDelayMs ?? DEFAULT_ANSWER_MAX_DELAY_MS;
  const limitMs = options.limitMs ?? DEFAULT_ANSWER_LIMIT_MS;
  const startedAt = Date.now();
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await ask();
    } catch (error) {
      if (options.retryIf !== undefined && !options.retryIf(error)) throw error;
      options.onError?.(error, attempt);
      const delayMs = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
      if (Date.now() + delayMs - startedAt > limitMs)
        throw new StoreUndecidedError(question, Date.now() - startedAt, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
