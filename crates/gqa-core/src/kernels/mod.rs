//! Attention kernels behind one small interface, so faster ones (fused CPU, CUDA) can be added
//! and checked against [`reference`].

pub mod reference;
