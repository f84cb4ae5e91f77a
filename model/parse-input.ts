/**
 * Parses an input against its schema and refuses it whole: every problem at once, each with the
 * full path of its key, unknown keys first (a misspelt key is often why a value seems missing),
 * with the closest known key when one is close:
 * "policy.downtimeLimit is not an option; did you mean policy.downtimeLimitMs?".
 */
import { z } from 'zod';
import { shown } from './checks';
import { InvalidInputError } from './errors';
import { closestName } from './suggest';

type Path = readonly (string | number)[];

function joinPath(path: Path): string {
  return path.join('.');
}

/** The object schema inside wrappers (optional, nullable, effects, default), if any. */
function objectOf(schema: z.ZodTypeAny | undefined): z.AnyZodObject | undefined {
  let s = schema;
  for (let i = 0; i < 8 && s !== undefined; i += 1) {
    if (s instanceof z.ZodObject) return s;
    if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodTypeAny;
    else if (s instanceof z.ZodEffects) s = s.innerType() as z.ZodTypeAny;
    else if (s instanceof z.ZodDefault) s = s.removeDefault() as z.ZodTypeAny;
    else return undefined;
  }
  return undefined;
}

/** The keys the object at `path` of `schema` takes. */
function keysAt(schema: z.ZodTypeAny, path: Path): string[] {
  let object = objectOf(schema);
  for (const segment of path) object = objectOf(object?.shape[String(segment)] as z.ZodTypeAny | undefined);
  return object ? Object.keys(object.shape) : [];
}

/** The value at `path` of `raw`, or undefined. */
function valueAt(raw: unknown, path: Path): unknown {
  let value = raw;
  for (const segment of path) value = (value as Record<string | number, unknown> | null | undefined)?.[segment];
  return value;
}

/** One line per issue, and the paths they name. */
function describeIssues(schema: z.ZodTypeAny, raw: unknown, issues: readonly z.ZodIssue[], subject: string) {
  const unknown: { path: string; line: string }[] = [];
  const others: { path: string; line: string }[] = [];
  for (const issue of issues) {
    const at = joinPath(issue.path);
    if (issue.code === z.ZodIssueCode.unrecognized_keys) {
      const known = keysAt(schema, issue.path);
      const prefix = at === '' ? '' : `${at}.`;
      for (const key of issue.keys) {
        const near = closestName(key, known);
        const hint = near !== undefined ? `did you mean ${prefix}${near}?` : `the options are ${known.join(', ')}`;
        unknown.push({ path: `${prefix}${key}`, line: `${prefix}${key} is not an option; ${hint}` });
      }
    } else if (issue.code === z.ZodIssueCode.invalid_type && issue.expected === 'object') {
      others.push({ path: at, line: `${at || subject} must be an object, got ${shown(valueAt(raw, issue.path))}` });
    } else if (issue.code === z.ZodIssueCode.custom) {
      others.push({ path: at, line: issue.message });
    } else {
      others.push({ path: at, line: `${at || subject}: ${issue.message}` });
    }
  }
  const all = [...unknown, ...others];
  return { message: all.map((p) => p.line).join('; '), paths: all.map((p) => p.path) };
}

/**
 * Returns `raw` parsed by `schema`; throws InvalidInputError naming every problem. `subject` names
 * the input as a whole in messages about it ("policy must be an object, got 5").
 */
export function parseInput<T>(schema: z.ZodType<T, z.ZodTypeDef, unknown>, raw: unknown, subject: string): T {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const { message, paths } = describeIssues(schema as z.ZodTypeAny, raw, parsed.error.issues, subject);
  throw new InvalidInputError(message, { paths, cause: parsed.error });
}
