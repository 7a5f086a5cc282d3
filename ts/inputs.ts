/**
 * Checks of array arguments at the JavaScript edge, shared by forward, predict, sessions and
 * training, before anything is read from them or handed to a binding:
 *
 * - a typed-array argument must be a real typed array of its kind (a `Proxy` around one, or an
 *   object that only inherits from its prototype, is refused: bindings cannot read it) whose
 *   buffer is not detached;
 * - an array argument's `length` is compared with the count expected before its elements are
 *   read, so an array-like such as `{ length: 1e9 }` is refused at once instead of being iterated.
 *
 * Each refusal is `INVALID_INPUT` naming the argument, the expected and the found value, the same
 * on every backend.
 *
 * - a typed array handed to a binding must fit the backend's memory budget ({@link checkInputBytes}):
 *   the binding copies it into its own memory before the core sees it (wasm: wasm-bindgen's
 *   `malloc`, which traps instead of failing when it cannot allocate, e.g. past 2 GiB), so a copy
 *   that cannot fit is `OUT_OF_MEMORY` naming the argument, before it is handed over.
 */

import { callBinding, GqaError } from "./errors.js";

/** Per backend: its budget `[limit, inUse]` (bytes) and the largest single buffer it can allocate. */
const budgets = new Map<string, { usage: () => ArrayLike<number> | undefined; maxBuffer: number }>();

/**
 * Registers the budget of a loaded backend for {@link checkInputBytes} (called by `GQA.init`; a
 * later module of the same backend replaces the earlier one's).
 * @internal
 */
export function registerBudget(backend: string, usage: () => ArrayLike<number> | undefined, maxBuffer: number): void {
  budgets.set(backend, { usage, maxBuffer });
}

/**
 * Checks that `x`'s bytes can be copied into `backend`'s memory: at most its largest single
 * buffer (wasm32: 2^31-1 bytes) and at most the room left in its budget (`limit - inUse`).
 * @throws GqaError `OUT_OF_MEMORY` naming `what`, with the bytes requested, the limit and the bytes in use
 */
export function checkInputBytes(x: ArrayBufferView, what: string, backend: string): void {
  const b = budgets.get(backend);
  const u = b ? callBinding(b.usage) : undefined;
  if (!b || !u) return;
  const [limit, inUse] = [u[0] ?? Number.POSITIVE_INFINITY, u[1] ?? 0];
  const cap = x.byteLength > b.maxBuffer ? b.maxBuffer : x.byteLength > limit - inUse ? limit : null;
  if (cap === null) return;
  throw new GqaError("OUT_OF_MEMORY", `out of memory for \`${what}\`: needs ${x.byteLength} bytes, limit is ${cap} bytes with ${inUse} bytes in use`, {
    fields: { what, requested: x.byteLength, limit: cap, inUse },
  });
}

/** Dims arrays longer than this are refused before they are read (every input has 3 dims). */
const MAX_DIMS = 8;

/** Whether `buf` has been detached (transferred, or its memory taken by `structuredClone`). */
function detached(buf: ArrayBufferLike): boolean {
  const flag = (buf as { detached?: unknown }).detached;
  if (typeof flag === "boolean") return flag;
  if (buf.byteLength !== 0) return false;
  try {
    new Uint8Array(buf);
    return false;
  } catch {
    return true;
  }
}

/** What `x` is, for a message. */
function describe(x: unknown): string {
  if (x === null) return "null";
  if (typeof x !== "object" && typeof x !== "function") return `${String(x)} (${typeof x})`;
  return Object.prototype.toString.call(x);
}

/**
 * Checks that `x` is a `Float32Array` (`kind`: or a `Uint32Array`) a binding can read: a real
 * typed array (not a Proxy around one) over a buffer that is not detached.
 * @throws GqaError `INVALID_INPUT` naming `what`
 */
export function checkTypedArray(x: unknown, what: string, kind: typeof Float32Array | typeof Uint32Array = Float32Array): void {
  const name = kind.name;
  if (!(x instanceof kind)) throw GqaError.invalidInput(what, `a ${name}`, describe(x));
  if (!ArrayBuffer.isView(x)) {
    throw GqaError.invalidInput(what, `a ${name}`, `an object that is not a typed array but inherits from ${name}.prototype (a Proxy around a ${name}?): copy it into a ${name}`);
  }
  if (detached(x.buffer)) {
    throw GqaError.invalidInput(what, `a ${name} whose buffer is not detached`, "a detached ArrayBuffer (transferred or structuredClone'd away)");
  }
}

/**
 * The `length` of an array or array-like argument, read without reading any element.
 * @throws GqaError `INVALID_INPUT` naming `what` when it has no whole non-negative length
 */
export function lengthOf(x: unknown, what: string, expected: string): number {
  if (typeof x !== "object" || x === null) throw GqaError.invalidInput(what, expected, describe(x));
  const n = (x as { length?: unknown }).length;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw GqaError.invalidInput(what, expected, `an object whose length is ${typeof n === "number" ? String(n) : typeof n}`);
  }
  return n;
}

/**
 * Refuses a dims array of more than {@link MAX_DIMS} entries before reading it (the core names
 * shorter wrong shapes itself, with the shape it expects).
 * @throws GqaError `INVALID_INPUT` naming `what`
 */
export function checkDimsCount(dims: unknown, what: string): void {
  const n = lengthOf(dims, what, "an array of 3 dims");
  if (n > MAX_DIMS) throw GqaError.invalidInput(what, "an array of 3 dims", `${n} dims`);
}

/**
 * An array argument of exactly `count` entries, as a plain array: its `length` is checked before
 * any element is read. `unit` names an entry in the message (`lengths`: "{count} lengths (one
 * per sequence)", found "{n} lengths").
 * @throws GqaError `INVALID_INPUT` naming `what`
 */
export function arrayOfCount(x: unknown, what: string, count: number, unit: string, per: string): number[] {
  checkCount(x, what, count, unit, per);
  return Array.from(x as ArrayLike<number>);
}

/** {@link arrayOfCount}'s check alone: `x` has exactly `count` entries (nothing else is read). */
export function checkCount(x: unknown, what: string, count: number, unit: string, per: string): void {
  const expected = `${count} ${unit} (${per})`;
  const n = lengthOf(x, what, expected);
  if (n !== count) throw GqaError.invalidInput(what, expected, `${n} ${unit}`);
}
