export * from './parse';
export * from './plan';
export * from './prompt';
