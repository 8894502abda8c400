/**
 * The text of a caught value: its message when it is an Error, else its
 * string form. Everything caught is `unknown` (useUnknownInCatchVariables),
 * so every error message goes through here.
 */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
