/**
 * Dataset and input readers (Node): UEA `.ts`, CSV, `.npy`; standardisation and padding.
 * Exports only; see each module for the details.
 */
export { DataFormatError, DataNotFoundError } from "./errors.js";
export { parseUea, readUea, type UeaDataset } from "./uea.js";
export { channelStats, standardize, MIN_STD, type ChannelStats } from "./standardize.js";
export { padBatch, batchIndices, type PaddedBatch } from "./batch.js";
export { resolveDataset, loadDataset, packageRoot, SHIPPED_DATASETS, type DatasetFiles, type LoadedDataset } from "./datasets.js";
export { parseCsv, readCsv, type CsvSeries } from "./csv.js";
export { parseNpy, readNpy, encodeNpy, type NpyArray, type NpyWritable } from "./npy.js";
export { readSeriesInput, type SeriesInput } from "./input.js";
