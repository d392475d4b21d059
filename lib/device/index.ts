export * from './actuator';
export * from './outbox';
export * from './signing';
