/**
 * gqa: grouped-query-attention transformer (Edifice.Attention.GQA) for Node, Deno and browsers.
 * Public exports only.
 */
export { GQA } from "./gqa.js";
export type { AttentionConfig, AttentionOptions, SharedAttentionOptions, BuildOptions, HfAttentionLoadOptions, HfConfig, RopeFrequencies, RopeScaling, GqaOptions, InitOptions, LoadOptions, ModelConfig, OutputMode, ParamSpec, RecommendedDefaults, SimdInfo } from "./gqa.js";
export { GqaAttention, Model } from "./model.js";
export type { ForwardOptions, LengthsOptions, OnnxExportOptions } from "./model.js";
export { Tensor } from "./tensor.js";
export { Session } from "./session.js";
export type { PushOptions, SessionOptions } from "./session.js";
export type { ClassificationHead, EpochSummary, EvalResult, EvaluateOptions, FitHistory, FitOptions, HeadOptions, RegressionHead, StepReport, TrainingData } from "./train.js";
export { GqaError } from "./errors.js";
export { cliTransform, modelInputs, readCliMetadata, readMetadata } from "./model-file.js";
export { applyTransform, type InputTransform, type TransformSpec } from "./data/transform.js";
export type { CliMetadata } from "./model-file.js";
export { DataFormatError } from "./data/errors.js";
export type { CoreErrorCode, CoreErrorFields, GqaErrorCode, GqaErrorFields, TsErrorCode, TsErrorFields } from "./errors.js";
export type { BackendChoice, BackendName as Backend, BackendName, BackendVariant, Environment } from "./backend.js";
export { detectEnvironment } from "./backend.js";
