export * from './errors';
export * from './scheduler';
export * from './json-schema';
export * from './metrics';
export * from './model-source';
export * from './runtime';
export * from './registry';
export * from './client';
export { defaultThreads, getSharedLlama, loadNodeLlamaCpp, type GpuChoice } from './llama';
