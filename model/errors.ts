/** Errors of ferry's shared input model. Recognise them by `name` (Jest may load two copies). */

/**
 * An input (a workflow's, an update's, a CLI's) was refused; the message names every problem with
 * the full path of its key: "policy.downtimeLimit is not an option; did you mean policy.downtimeLimitMs?".
 * `paths` lists the paths refused (`policy.downtimeLimit`), in the order of the message.
 */
export class InvalidInputError extends Error {
  override readonly name = 'InvalidInputError';
  readonly paths: readonly string[];

  constructor(message: string, opts: { paths?: readonly string[]; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.paths = opts.paths ?? [];
  }
}
