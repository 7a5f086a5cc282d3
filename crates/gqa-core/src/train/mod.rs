//! Training: task heads, losses, AdamW, schedules and the training loop (issue: training).
//!
//! Gradients come from candle's autograd over the same differentiable forward as inference
//! ([`crate::GqaModel::forward_t`]), so training and inference cannot drift apart.

pub mod head;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod task;
pub mod trainer;

pub use head::{Head, HeadConfig, RegressionLoss};
pub use optim::{AdamW, AdamWConfig};
pub use schedule::WarmupCosine;
pub use task::TaskModel;
pub use trainer::{evaluate, EvalReport, FitOptions, Labels, StepReport, TrainData, Trainer};
