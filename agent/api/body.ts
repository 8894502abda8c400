/**
 * Checks on a request body, answering 400 BadRequest with the field named:
 * shared by the routes that take one.
 */
import { ApiFailure } from './server.ts';

/** body[field] as a string: non-empty unless optional (then absent reads as ''). */
export function requireString(body: Record<string, unknown>, field: string, optional = false): string {
  const value = body[field];
  if (value === undefined && optional) return '';
  if (typeof value !== 'string' || (!optional && value === '')) {
    throw new ApiFailure(400, 'BadRequest', `field '${field}' must be a non-empty string`);
  }
  return value;
}

/** The body as a JSON object (not null, not an array). */
export function requireObject(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiFailure(400, 'BadRequest', 'request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}
