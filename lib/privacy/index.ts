export * from './types';
export { detect, resolveOverlaps, compileCustomPatterns, type DetectOptions } from './detectors';
export { findPersons, type PersonDetector } from './person';
export {
  Pseudonymizer,
  restoreText,
  isPseudonymMap,
  maskValue,
  keyedHash,
  normalizeForHash,
  applyOperators,
  type PseudonymMap,
} from './operators';
export {
  PrivacyGuard,
  BlockedError,
  DEFAULT_OPERATORS,
  DEFAULT_LIMITS,
  DEFAULT_SLICE_MS,
  type GuardConfig,
  type ProtectResult,
} from './guard';
export {
  auditRecord,
  auditRecordAsync,
  stableStringify,
  JsonLinesAuditWriter,
  type AuditRecord,
} from './audit';
export {
  SessionMaps,
  DEFAULT_SESSION_LIMITS,
  isRequestBinding,
  type SessionLimits,
  type SessionStorage,
  type SessionRecord,
  type RequestBinding,
} from './sessions';
export { DEFAULT_REGIONS, gatewayRegion } from './phone';
