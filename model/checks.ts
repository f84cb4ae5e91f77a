/**
 * Leaf schemas whose messages keep ferry's style: the field's path, what it must be, and the value
 * given ("downtimeLimitMs must be a positive integer, got -5"). zod checks the shape; each leaf
 * says in its own words what is wrong with a value.
 */
import { z } from 'zod';

/** How a value is shown in a message: numbers as themselves (NaN included), the rest as JSON. */
export function shown(value: unknown): string {
  return typeof value === 'number' || value === undefined ? String(value) : JSON.stringify(value);
}

/** A schema of T whose values pass `valid`; `label` replaces the path in the message when given. */
export function checked<T>(
  valid: (value: unknown) => value is T,
  mustBe: string,
  label?: string,
): z.ZodType<T, z.ZodTypeDef, unknown> {
  const schema = z.unknown().superRefine((value, ctx) => {
    if (!valid(value))
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        message: `${label ?? ctx.path.join('.')} must be ${mustBe}, got ${shown(value)}`,
      });
  });
  // The refinement above admits only values that pass `valid`.
  return schema as unknown as z.ZodType<T, z.ZodTypeDef, unknown>;
}

/** A positive integer, at most `max` when given. */
export function positiveInteger(max?: number): z.ZodType<number, z.ZodTypeDef, unknown> {
  return checked(
    (v): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0 && (max === undefined || v <= max),
    `a positive integer${max === undefined ? '' : ` up to ${max}`}`,
  );
}

/** true or false. */
export function booleanValue(): z.ZodType<boolean, z.ZodTypeDef, unknown> {
  return checked((v): v is boolean => typeof v === 'boolean', 'true or false');
}

/** One of `values`, listed in the message as `"a" or "b"` (two) or `one of a, b, c` (more). */
export function oneOf<T extends string>(values: readonly T[]): z.ZodType<T, z.ZodTypeDef, unknown> {
  const mustBe =
    values.length === 2 ? values.map((v) => JSON.stringify(v)).join(' or ') : `one of ${values.join(', ')}`;
  return checked((v): v is T => typeof v === 'string' && (values as readonly string[]).includes(v), mustBe);
}

/** A non-empty string (`what` says what it is, e.g. "a non-empty path"). */
export function nonEmptyString(what: string): z.ZodType<string, z.ZodTypeDef, unknown> {
  return checked((v): v is string => typeof v === 'string' && v !== '', what);
}
