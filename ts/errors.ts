/**
 * Errors of the gqa API.
 *
 * Every failure surfaces as a {@link GqaError} with a stable `code`. Codes that come from the
 * Rust core (`gqa_core::Error::code()`) cross the binding boundary as a JS `Error` whose message
 * is `"<CODE>: <message>"`; {@link toGqaError} is the one place that parses it.
 */

/** Codes produced by the Rust core (`gqa_core::Error::code()`). */
export type CoreErrorCode =
  | "INVALID_OPTION"
  | "INVALID_INPUT"
  | "TENSOR_MISMATCH"
  | "MISSING_PARAMETER"
  | "UNEXPECTED_PARAMETER"
  | "NON_FINITE_WEIGHT"
  | "MALFORMED_FILE"
  | "MISSING_CONFIG"
  | "OUT_OF_MEMORY"
  | "CACHE_FULL"
  | "BACKEND"
  | "INTERNAL";

/** Codes produced by the TypeScript layer itself. */
export type TsErrorCode = "BACKEND_LOAD_FAILED" | "NOT_INITIALIZED" | "DISPOSED";

/** Every error code a gqa call can fail with. */
export type GqaErrorCode = CoreErrorCode | TsErrorCode;

const CORE_CODES: ReadonlySet<string> = new Set<GqaErrorCode>([
  "INVALID_OPTION",
  "INVALID_INPUT",
  "TENSOR_MISMATCH",
  "MISSING_PARAMETER",
  "UNEXPECTED_PARAMETER",
  "NON_FINITE_WEIGHT",
  "MALFORMED_FILE",
  "MISSING_CONFIG",
  "OUT_OF_MEMORY",
  "CACHE_FULL",
  "BACKEND",
  "INTERNAL",
  // TS-side codes the bindings also use (e.g. a freed native handle).
  "DISPOSED",
]);

/** An error from gqa: `code` is stable (branch on it), `message` names what was wrong. */
export class GqaError extends Error {
  /** Stable error code, e.g. `"INVALID_OPTION"` (see {@link GqaErrorCode}). */
  readonly code: GqaErrorCode;

  /**
   * @param code the stable code
   * @param message what was wrong: the option/tensor/input, the expected and the found value
   * @param options standard `ErrorOptions` (`cause`)
   */
  constructor(code: GqaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "GqaError";
    this.code = code;
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
 * - `Error("<CODE>: <message>")` with a core code -> `GqaError(CODE, message)`;
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
    return new GqaError("INTERNAL", `wasm trap (panic or abort inside the WebAssembly module): ${panic ?? e.message}`, {
      cause: e,
    });
  }
  const message = e instanceof Error ? e.message : String(e);
  const m = /^([A-Z_]+): ([\s\S]*)$/.exec(message);
  if (m && CORE_CODES.has(m[1]!)) {
    return new GqaError(m[1] as GqaErrorCode, m[2]!, { cause: e });
  }
  return new GqaError("INTERNAL", `unexpected error from the backend: ${message}`, { cause: e });
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
 * this module instance (README, "Errors"), while the instance and every other object keep working.
 * @internal
 */
export function freeWasmObject(o: { free(): void }): void {
  try {
    o.free();
  } catch {
    // Leaked after a trap inside one of its calls; see above.
  }
}
