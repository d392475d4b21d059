/** Built-in entity types. Custom patterns add their own upper-case names. */
export const ENTITY_TYPES = [
  'EMAIL',
  'PHONE',
  'IPV4',
  'IPV6',
  'MAC',
  'CARD',
  'IBAN',
  'NATIONAL_ID',
  'GPS',
  'DOB',
  'PERSON',
  'SECRET',
] as const;

export type BuiltinEntityType = (typeof ENTITY_TYPES)[number];
export type EntityType = BuiltinEntityType | string;

export interface Finding {
  type: EntityType;
  /** UTF-16 offsets into the scanned text, end exclusive. */
  start: number;
  end: number;
  value: string;
  /** Which rule found it, for evaluation and debugging (never logged with the value). */
  rule: string;
}

export type Operator = 'off' | 'redact' | 'mask' | 'hash' | 'pseudonym';
export const OPERATORS: readonly Operator[] = ['off', 'redact', 'mask', 'hash', 'pseudonym'];

export interface CustomPattern {
  /** Entity type name, upper case letters, digits and underscores (e.g. ASSET_TAG). */
  name: string;
  /** JavaScript regular expression source. */
  pattern: string;
  /** Regex flags besides g (i, u, m, s). */
  flags?: string;
  /** If given, a match counts only when one of these words occurs within `window` characters before it. */
  context?: string[];
  window?: number;
}
