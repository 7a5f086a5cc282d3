//! Training: task heads, losses, AdamW, schedules and the training loop (issue: training).
//!
//! On the CPU in f32 a step runs the fused training kernels ([`crate::kernels::training`]: forward
//! with saved activations, hand-written backward, in-place AdamW). Elsewhere (other devices, or
//! `GQA_REFERENCE_KERNELS=1`) gradients come from candle's autograd over the same differentiable
//! forward as inference ([`crate::GqaModel::forward_t`]); tests hold the two paths together.

pub mod head;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod task;
pub mod trainer;

pub use crate::kernels::training::{StepLoss, TrainWorkspace};
pub use head::{Head, HeadConfig, RegressionLoss};
pub use optim::{AdamW, AdamWConfig};
pub use schedule::WarmupCosine;
pub use task::TaskModel;
pub use trainer::{
    evaluate, fused_gradients, fused_gradients_smoothed, EvalReport, FitOptions, Labels,
    StepReport, TrainData, Trainer,
};
