/**
 * A dense float32 tensor in row-major order: `data.length === dims.reduce((a, b) => a * b, 1)`.
 *
 * Model outputs are `Tensor`s with dims `[B, H]` (`last_timestep`, `mean_pool`) or `[B, T, H]`
 * (`all`), `H = hiddenSize`.
 */
export class Tensor {
  /** The values, row-major. */
  readonly data: Float32Array;
  /** The shape, outermost first (e.g. `[B, T, H]`). */
  readonly dims: number[];

  /**
   * @param data row-major values (kept, not copied)
   * @param dims shape; its product must equal `data.length`
   * @throws RangeError when the product of `dims` differs from `data.length`
   */
  constructor(data: Float32Array, dims: readonly number[]) {
    const n = dims.reduce((a, b) => a * b, 1);
    if (n !== data.length) {
      throw new RangeError(`Tensor: dims [${dims.join(", ")}] hold ${n} values, data has ${data.length}`);
    }
    this.data = data;
    this.dims = [...dims];
  }

  /** Number of values (`data.length`). */
  get size(): number {
    return this.data.length;
  }

  /** The value at a multi-index (one index per dim), for tests and debugging. */
  at(...index: number[]): number {
    if (index.length !== this.dims.length) {
      throw new RangeError(`Tensor.at: expected ${this.dims.length} indices, found ${index.length}`);
    }
    let flat = 0;
    for (let i = 0; i < index.length; i++) {
      const d = this.dims[i]!;
      const k = index[i]!;
      if (!Number.isInteger(k) || k < 0 || k >= d) throw new RangeError(`Tensor.at: index ${k} out of 0..${d - 1} on axis ${i}`);
      flat = flat * d + k;
    }
    return this.data[flat]!;
  }
}
