/**
 * The one pattern every id in ferry matches: VM ids, host ids and migration ids alike. An id names
 * files, sockets, task queues and store keys, so it is 1-64 letters, digits, `_` or `-`, starting
 * with a letter or digit: no `.`, no `/`, nothing a shell or a path would read as more than a name.
 */
import type { z } from 'zod';
import { checked, shown } from './checks';
import { InvalidInputError } from './errors';

/** Longest id (characters). */
export const MAX_ID_CHARS = 64;

/** The pattern of every id. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** What the pattern allows, as error messages say it. */
export const ID_RULE = `1-${MAX_ID_CHARS} letters, digits, _ or -, starting with a letter or digit`;

/** The kinds of id, by the name their field has in inputs. */
export type IdKind = 'vmId' | 'hostId' | 'migrationId';

/** Whether `value` is a well-formed id. */
export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value);
}

/**
 * A zod schema of an id. Its message names the field by its path: "sourceHost must be 1-64
 * letters, digits, _ or -, starting with a letter or digit, got "h.9"".
 */
export function idSchema(): z.ZodType<string, z.ZodTypeDef, unknown> {
  return checked(isValidId, ID_RULE);
}

/**
 * Returns `value` if it is a well-formed id; throws InvalidInputError naming `name` (default: the
 * kind) and the value otherwise.
 */
export function validateId(kind: IdKind, value: unknown, name: string = kind): string {
  if (!isValidId(value))
    throw new InvalidInputError(`${name} must be ${ID_RULE}, got ${shown(value)}`, { paths: [name] });
  return value;
}
