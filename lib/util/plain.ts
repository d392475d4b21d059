/**
 * A plain data object: `{...}` or `Object.create(null)`, from this realm or another one. Objects
 * built in a Node-RED function node come from the node's own vm context, whose Object.prototype is
 * not ours, so comparing against our Object.prototype would refuse every one of them.
 */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  if (proto === null) return true;
  // This realm's Object.prototype (nearly every object met): the same answer as below, sooner.
  if (proto === Object.prototype) return Object.prototype.toString.call(value) === '[object Object]';
  // Some realm's Object.prototype: the end of its chain, and it has its own Object constructor.
  return (
    Object.getPrototypeOf(proto) === null &&
    Object.prototype.toString.call(value) === '[object Object]' &&
    typeof proto.constructor === 'function' &&
    proto.constructor.name === 'Object'
  );
}
