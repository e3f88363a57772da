//! Small layers shared by the SAM networks (`segment_anything/modeling/common.py`).

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation;

use crate::error::Result;
use crate::weights::Weights;

/// The activation inside an [`MlpBlock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpActivation {
    /// `nn.ReLU`, what the two-way transformer uses.
    Relu,
    /// `nn.GELU` (exact, erf-based), the default of `MLPBlock`.
    Gelu,
}

/// `MLPBlock`: `lin2(act(lin1(x)))`; the image encoder uses GELU, the two-way transformer ReLU.
#[derive(Module, Debug)]
pub struct MlpBlock {
    lin1: Linear,
    lin2: Linear,
    #[module(skip)]
    act: MlpActivation,
}

impl MlpBlock {
    /// Loads `lin1` (`dim -> hidden`) and `lin2` (`hidden -> dim`).
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, dim: usize, hidden: usize, act: MlpActivation) -> Result<Self> {
        Ok(Self {
            lin1: w.linear("lin1", dim, hidden, true)?,
            lin2: w.linear("lin2", hidden, dim, true)?,
            act,
        })
    }

    /// `[..., dim] -> [..., dim]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = self.lin1.forward(x);
        let x = match self.act {
            MlpActivation::Relu => activation::relu(x),
            MlpActivation::Gelu => activation::gelu(x),
        };
        self.lin2.forward(x)
    }
}

/// `LayerNorm2d`: layer norm over the channels of a `[batch, channels, height, width]` map.
#[derive(Module, Debug)]
pub struct LayerNorm2d {
    weight: Param<Tensor<1>>,
    bias: Param<Tensor<1>>,
    #[module(skip)]
    eps: f64,
}

impl LayerNorm2d {
    /// Loads `weight` and `bias` of `channels` elements; SAM uses `eps = 1e-6`.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, channels: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.param("weight", [channels])?,
            bias: w.param("bias", [channels])?,
            eps,
        })
    }

    /// `[batch, channels, height, width] -> same`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let channels = self.weight.dims()[0];
        let mean = x.clone().mean_dim(1);
        let centred = x - mean;
        let var = centred.clone().powi_scalar(2).mean_dim(1);
        let normed = centred / var.add_scalar(self.eps).sqrt();
        let weight = self.weight.val().reshape([1, channels, 1, 1]);
        let bias = self.bias.val().reshape([1, channels, 1, 1]);
        normed * weight + bias
    }
}
