/**
 * `gqa/data` (Node and Deno): dataset and input readers (UEA `.ts`, CSV, `.npy`, labelled data in
 * the formats `gqa train` reads), the shipped datasets, per-channel standardisation, padding, and
 * {@link trainingData} to hand cases and labels to `model.fit`. Exports only; see each module for
 * the details. Errors: {@link DataFormatError} (names the file, line or case, and the problem),
 * {@link DataNotFoundError}, `RangeError` for bad arguments.
 */
export { DataFormatError, DataNotFoundError } from "./errors.js";
export { parseUea, readUea, type UeaDataset } from "./uea.js";
export { channelStats, standardize, MIN_STD, type ChannelStats } from "./standardize.js";
export { padBatch, batchIndices, trainingData, type PaddedBatch } from "./batch.js";
export { readLabelled, readLabelsFile, sortClassNames, type LabelledReadOptions, type RawLabelled, type Task } from "./labelled.js";
export { resolveDataset, loadDataset, packageRoot, SHIPPED_DATASETS, type DatasetFiles, type LoadedDataset } from "./datasets.js";
export { parseCsv, readCsv, type CsvSeries } from "./csv.js";
export { parseNpy, readNpy, encodeNpy, type NpyArray, type NpyWritable } from "./npy.js";
export { readSeriesInput, type SeriesInput, type SeriesInputOptions } from "./input.js";
export { applyTransform, instanceNormalize, patchSeries, tokenCount, tokenWidth, IDENTITY_SPEC, type InputTransform, type TransformSpec } from "./transform.js";
