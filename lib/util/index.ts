export * from './plain';
export * from './redact';
