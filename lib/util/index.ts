export * from './plain';
export * from './redact';
export * from './files';
export * from './user-dir';
export * from './secret';
