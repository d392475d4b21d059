/**
 * A key that a node takes from its credentials or, where those are blank, from an environment
 * variable (a gateway's secret store or systemd credentials usually end up there): the
 * credential wins; a blank variable name means `defaultName` ('' for none).
 */
export function secretFrom(
  credential: string | undefined,
  envName: string | undefined,
  defaultName: string,
): string | undefined {
  if (credential) return credential;
  const name = (envName ?? '').trim() || defaultName;
  return name ? process.env[name] || undefined : undefined;
}

/** An environment variable name as a person types it: letters, digits and "_", not starting with a digit. */
export function checkEnvName(name: string | undefined, label: string): void {
  if (name === undefined || name.trim() === '') return;
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name.trim()))
    throw new Error(
      `${label} must be an environment variable name (letters, digits and "_"), got "${name}".`,
    );
}
