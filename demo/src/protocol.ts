// Messages between the page (main.ts) and the worker (worker.ts).
import type { HeadOptions, ModelConfig } from "gqa";

/** Page -> worker. Buffers are transferred, not copied. */
export type Request =
  | { id: number; type: "load"; bytes: ArrayBuffer }
  | { id: number; type: "run"; x: Float32Array; dims: number[] };

/** KV-cache bytes per cached token of the loaded model and its MHA / MQA twins. */
export interface KvBytes {
  model: number;
  mha: number;
  mqa: number;
}

/** Worker -> page. */
export type Reply =
  | { id: number; type: "loaded"; backend: string; variant: string; threads: number; gemm: string; config: ModelConfig; head: HeadOptions | null; paramCount: number; kv: KvBytes }
  | { id: number; type: "result"; probs: Float32Array | null; output: Float32Array; maps: Float32Array; mapDims: number[]; ms: number }
  | { id: number; type: "error"; code: string; message: string };
