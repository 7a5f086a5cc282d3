/**
 * Errors of the gqa API.
 *
 * Every failure surfaces as a {@link GqaError} with a stable `code` and, as own properties, the
 * fields of that code ({@link GqaErrorFields}): `e.option`, `e.expected`, `e.found` for an
 * invalid option, `e.tensor` for a bad weight, `e.requested` / `e.limit` / `e.inUse` for out of
 * memory, and so on. Errors of the Rust core cross the binding boundary as JS errors that already
 * carry `code` and those fields (`gqa_core::Error::fields`, set by `bindings/node/src/error.rs` and
 * `bindings/wasm/src/error.rs`); {@link toGqaError} is the one place that wraps them.
 */

import { CORE_ERROR_FIELDS, type CoreErrorFields } from "./generated/errors.js";

/**
 * The fields each core code sets, generated from `gqa_core::Error` (schema/errors.json, then
 * ts/generated/errors.ts): codes, field names, field types and docs have their one home in
 * crates/gqa-core/src/error.rs; test/errors.test.ts checks the table against the bindings'
 * `errorCatalog()`.
 */
export type { CoreErrorFields };
export { CORE_ERROR_FIELDS };

/** Codes produced by the Rust core (`gqa_core::Error::code()`). */
export type CoreErrorCode = keyof CoreErrorFields;

/** The fields of the codes the TypeScript layer adds (none carry fields). */
export interface TsErrorFields {
  /** No backend could be loaded (the message names each one tried and why it failed). */
  BACKEND_LOAD_FAILED: Record<never, never>;
  /** A function that needs a backend ran before `GQA.init()`. */
  NOT_INITIALIZED: Record<never, never>;
}

/** Codes produced by the TypeScript layer itself. */
export type TsErrorCode = keyof TsErrorFields;

/** Every error code with its fields. */
export type GqaErrorFields = CoreErrorFields & TsErrorFields;

/** Every error code a gqa call can fail with. */
export type GqaErrorCode = keyof GqaErrorFields;

/** Codes that mean the caller's input was wrong (options, data, files), not gqa or the machine. */
export const INPUT_ERROR_CODES: ReadonlySet<GqaErrorCode> = new Set<GqaErrorCode>([
  "INVALID_OPTION",
  "INVALID_INPUT",
  "TENSOR_MISMATCH",
  "MISSING_PARAMETER",
  "UNEXPECTED_PARAMETER",
  "NON_FINITE_WEIGHT",
  "MALFORMED_FILE",
  "MISSING_CONFIG",
]);

/** Union of every field of every code, as optional properties (see {@link GqaError}). */
type AnyFields = { readonly [K in keyof UnionToIntersection<GqaErrorFields[GqaErrorCode]>]?: UnionToIntersection<GqaErrorFields[GqaErrorCode]>[K] };
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void ? I : never;

/**
 * An error from gqa: `code` is stable (branch on it), `message` names what was wrong, and the
 * code's fields ({@link GqaErrorFields}) are own properties: `e.option`, `e.expected`,
 * `e.found`, ... Narrow with {@link GqaError.is} to read them with their types:
 *
 * ```ts
 * if (GqaError.is(e, "OUT_OF_MEMORY")) console.log(e.requested, e.limit, e.inUse);
 * ```
 */
export class GqaError<C extends GqaErrorCode = GqaErrorCode> extends Error {
  /** Stable error code, e.g. `"INVALID_OPTION"` (see {@link GqaErrorCode}). */
  readonly code: C;

  // The fields, typed per code, readable on any GqaError (undefined where the code has none):
  // every field of AnyFields (test/errors.test.ts checks that none is missing). `declare`: types
  // only, no class field is emitted, so the own properties stay those the constructor assigns.
  declare readonly option?: AnyFields["option"];
  declare readonly expected?: AnyFields["expected"];
  declare readonly found?: AnyFields["found"];
  declare readonly what?: AnyFields["what"];
  declare readonly tensor?: AnyFields["tensor"];
  declare readonly field?: AnyFields["field"];
  declare readonly parameter?: AnyFields["parameter"];
  declare readonly lookedFor?: AnyFields["lookedFor"];
  declare readonly index?: AnyFields["index"];
  declare readonly value?: AnyFields["value"];
  declare readonly reason?: AnyFields["reason"];
  declare readonly requested?: AnyFields["requested"];
  declare readonly limit?: AnyFields["limit"];
  declare readonly inUse?: AnyFields["inUse"];
  declare readonly capacity?: AnyFields["capacity"];
  declare readonly cached?: AnyFields["cached"];
  declare readonly pushed?: AnyFields["pushed"];
  declare readonly detail?: AnyFields["detail"];

  /**
   * @param code the stable code
   * @param message what was wrong: the option/tensor/input, the expected and the found value
   * @param options standard `ErrorOptions` (`cause`) and the code's fields
   */
  constructor(code: C, message: string, options?: { cause?: unknown; fields?: GqaErrorFields[C] }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GqaError";
    this.code = code;
    if (options?.fields) Object.assign(this, options.fields);
  }

  /** Whether `e` is a {@link GqaError} with `code`; narrows it to that code's fields. */
  static is<K extends GqaErrorCode>(e: unknown, code: K): e is GqaError<K> & Readonly<GqaErrorFields[K]> {
    return e instanceof GqaError && e.code === code;
  }

  /** `INVALID_OPTION` with the core's message format: "invalid option `option`: expected ..., found ...". */
  static invalidOption(option: string, expected: string, found: string, cause?: unknown): GqaError<"INVALID_OPTION"> {
    return new GqaError("INVALID_OPTION", `invalid option \`${option}\`: expected ${expected}, found ${found}`, { cause, fields: { option, expected, found } });
  }

  /** `INVALID_INPUT` with the core's message format: "invalid input `what`: expected ..., found ...". */
  static invalidInput(what: string, expected: string, found: string, cause?: unknown): GqaError<"INVALID_INPUT"> {
    return new GqaError("INVALID_INPUT", `invalid input \`${what}\`: expected ${expected}, found ${found}`, { cause, fields: { what, expected, found } });
  }

  /** `INTERNAL` with `detail` as its message and field. */
  static internal(detail: string, cause?: unknown): GqaError<"INTERNAL"> {
    return new GqaError("INTERNAL", detail, { cause, fields: { detail } });
  }

  /** `DISPOSED` for `what` (`model`, `session`, `trainer`, `attention layer`), as the core words it. */
  static disposed(what: string): GqaError<"DISPOSED"> {
    return new GqaError("DISPOSED", `the ${what} was disposed: expected a live ${what}, found one freed by dispose()`, { fields: { what } });
  }
}

/** Readers of the last Rust panic message of each loaded wasm module (`takeLastPanic`). */
const trapInfo: Array<() => string | undefined> = [];

/** Registers a wasm module's reader of its last panic message, used to describe traps. @internal */
export function registerTrapInfo(f: () => string | undefined): void {
  trapInfo.push(f);
}

/**
 * Converts anything thrown by a binding into a {@link GqaError}.
 *
 * - an `Error` with a core `code` property (what both bindings throw) -> `GqaError(code,
 *   message)` with the code's fields copied from it (`option`, `expected`, `found`, ...);
 * - `Error("<CODE>: <message>")` with a core code (the bindings' fallback when the structured
 *   object cannot be built) -> `GqaError(CODE, message)`;
 * - `WebAssembly.RuntimeError` (a trap: a Rust panic or an allocation failure inside wasm)
 *   -> `GqaError("INTERNAL", ...)` naming the panic's message where the module recorded one
 *   (see {@link registerTrapInfo}). The core's calls check and reserve before they allocate,
 *   so the instance keeps working for later calls;
 * - a `GqaError` is returned unchanged; anything else -> `INTERNAL`.
 */
export function toGqaError(e: unknown): GqaError {
  if (e instanceof GqaError) return e;
  if (typeof WebAssembly !== "undefined" && e instanceof WebAssembly.RuntimeError) {
    let panic: string | undefined;
    for (const f of trapInfo) panic ??= f();
    const detail = `wasm trap (panic or abort inside the WebAssembly module): ${panic ?? e.message}`;
    return GqaError.internal(detail, e);
  }
  const message = e instanceof Error ? e.message : String(e);
  const code = e instanceof Error ? (e as { code?: unknown }).code : undefined;
  if (typeof code === "string" && Object.hasOwn(CORE_ERROR_FIELDS, code)) {
    const c = code as CoreErrorCode;
    const fields: Record<string, unknown> = {};
    for (const k of CORE_ERROR_FIELDS[c] as readonly string[]) fields[k] = (e as unknown as Record<string, unknown>)[k];
    return new GqaError(c, message, { cause: e, fields: fields as never });
  }
  const m = /^([A-Z_]+): ([\s\S]*)$/.exec(message);
  if (m && Object.hasOwn(CORE_ERROR_FIELDS, m[1]!)) {
    return new GqaError(m[1] as CoreErrorCode, m[2]!, { cause: e });
  }
  const detail = `unexpected error from the backend: ${message}`;
  return GqaError.internal(detail, e);
}

/** Runs a synchronous binding call, converting whatever it throws with {@link toGqaError}. */
export function callBinding<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw toGqaError(e);
  }
}

/** Awaits an asynchronous binding call, converting its rejection with {@link toGqaError}. */
export async function callBindingAsync<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw toGqaError(e);
  }
}

/**
 * Frees a wasm-bindgen object without ever throwing. A Rust panic traps in wasm32 (no unwinding),
 * so an object whose call trapped stays marked as borrowed and wasm-bindgen refuses to free it
 * ("attempted to take ownership of Rust value while it was borrowed"): its memory is then lost to
 * this module instance (docs/guide.md, "Errors"), while the instance and every other object keep working.
 * @internal
 */
export function freeWasmObject(o: { free(): void }): void {
  try {
    o.free();
  } catch {
    // Leaked after a trap inside one of its calls; see above.
  }
}

/**
 * A free that runs once, whatever the caller does, and never throws ({@link freeWasmObject};
 * the napi addon's `free` does not throw).
 * @internal
 */
export function freeOnce(o: { free(): void }): () => void {
  let freed = false;
  return () => {
    if (!freed) {
      freed = true;
      freeWasmObject(o);
    }
  };
}

/** A JSON value: what crosses into the core as options (see {@link coreOptions}). */
export type CoreValue = null | boolean | number | string | CoreValue[] | { [key: string]: CoreValue };

/** How deep options may nest ({@link coreOptions}); gqa's own go 3 levels deep (`hfConfig.rope_scaling.factor`). */
const MAX_OPTION_DEPTH = 64;

/** The longest array an option may hold ({@link coreOptions}): gqa's longest are class weights. */
const MAX_OPTION_ARRAY = 1 << 24;

/**
 * A new object without a prototype holding `entries`: what crosses into the core. napi-rs reads
 * an object's keys with `napi_get_property_names`, which also lists enumerable properties
 * inherited from `Object.prototype` (a polluted prototype would become options on native only);
 * an object with no prototype has no inherited keys, so both bindings read the same own keys.
 * @internal
 */
export function ownOptions(entries: Iterable<readonly [string, CoreValue]>): { [key: string]: CoreValue } {
  const out = Object.create(null) as { [key: string]: CoreValue };
  for (const [k, v] of entries) out[k] = v;
  return out;
}

/**
 * Options on their way into the core: the plain object both bindings convert field by field
 * (napi-rs's `serde_json::Value` conversion, serde-wasm-bindgen), so the core reads exactly
 * these values on every backend. A copy in which a key whose value is `undefined` is left out
 * (the option then takes its default, as `JSON.stringify` would have it) and a typed array
 * becomes an array; what no JSON value can hold throws `INVALID_OPTION` naming its path
 * (`root.key[i]...`; `root` defaults to none, so top-level keys are named alone): a `NaN` or
 * infinite number, a function, symbol or bigint, an `undefined` array element, nesting deeper
 * than 64 levels, an array longer than 2^24 elements. Only own enumerable keys are read (inherited
 * ones, as from a polluted `Object.prototype`, are not options), and every object of the copy has
 * no prototype ({@link ownOptions}), so neither binding can read an inherited key.
 */
export function coreOptions(value: unknown, root = ""): CoreValue {
  const walk = (v: unknown, path: string, depth: number): CoreValue => {
    const name = path || "options";
    if (v === null || typeof v === "boolean" || typeof v === "string") return v;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw GqaError.invalidOption(name, "a finite number", String(v));
      return v;
    }
    if (typeof v !== "object") throw GqaError.invalidOption(name, "a JSON value (number, string, boolean, null, array or object)", typeof v);
    if (depth >= MAX_OPTION_DEPTH) throw GqaError.invalidOption(name, `options nested at most ${MAX_OPTION_DEPTH} levels deep`, "deeper nesting");
    const size = ArrayBuffer.isView(v) || Array.isArray(v) ? (v as ArrayLike<unknown>).length : 0;
    if (size > MAX_OPTION_ARRAY) throw GqaError.invalidOption(name, `an array of at most ${MAX_OPTION_ARRAY} elements`, `${size} elements`);
    const list = ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v;
    if (Array.isArray(list)) return Array.from(list, (x, i) => walk(x, `${path}[${i}]`, depth + 1));
    const out: Array<[string, CoreValue]> = [];
    for (const [k, x] of Object.entries(list)) {
      if (x !== undefined) out.push([k, walk(x, path ? `${path}.${k}` : k, depth + 1)]);
    }
    return ownOptions(out);
  };
  return walk(value, root, 0);
}
