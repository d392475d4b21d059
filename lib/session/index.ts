export * from './state';
export * from './window';
export * from './store';
export { writeAtomic, writeAtomicSync } from './files';
