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
            MlpActivation::Gelu => gelu(x),
        };
        self.lin2.forward(x)
    }
}

/// `nn.GELU()`, the exact form `x * (1 + erf(x / sqrt 2)) / 2`, as burn's `activation::gelu`.
///
/// On the CPU backend this is one parallel, vectorised pass over the values with the rational
/// `erf` of [`erf`] instead of burn's five passes (burn's `flex` runs a scalar `erf` on one
/// thread: a third of TinyViT's time). Other backends use burn's.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if x.dtype() != burn::tensor::DType::F32 || device != Device::flex() {
        return activation::gelu(x);
    }
    let shape = x.shape();
    let Ok(mut values) = x.into_data().try_into_vec::<f32>() else {
        unreachable!("an f32 tensor's data is a vector of f32")
    };
    for_each_chunk(&mut values, |chunk| {
        for v in chunk {
            *v = *v * (erf(*v * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5;
        }
    });
    Tensor::from_data(TensorData::new(values, shape), &device)
}

/// The error function in single precision, as a rational function of `x` on `[-4, 4]` (outside
/// it, `erf` is +-1 in `f32`): `x P(x^2) / Q(x^2)`, the approximation Eigen and XLA use. No
/// branch and no library call, so the compiler vectorises a loop of it. Within 5e-7 of libm's
/// `erff` (4.2e-7 measured, tested below).
pub fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const Q: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().fold(0.0, |acc, &c| acc * x2 + c);
    let q = Q.iter().fold(0.0, |acc, &c| acc * x2 + c);
    (x * p / q).clamp(-1.0, 1.0)
}

/// Runs `f` over chunks of `values`, on every core where the `parallel` feature is on.
fn for_each_chunk(values: &mut [f32], f: impl Fn(&mut [f32]) + Send + Sync) {
    const CHUNK: usize = 1 << 14;
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        values.par_chunks_mut(CHUNK).for_each(f);
    }
    #[cfg(not(feature = "parallel"))]
    values.chunks_mut(CHUNK).for_each(f);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_5e_7_of_libm() {
        let worst = (-60_000..=60_000)
            .map(|i| i as f32 * 1e-4)
            .map(|x| (erf(x) - libm::erff(x)).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 5e-7, "largest difference {worst:e}");
        assert!((erf(f32::INFINITY) - 1.0).abs() < 5e-7);
        assert!((erf(f32::NEG_INFINITY) + 1.0).abs() < 5e-7);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn gelu_on_the_cpu_matches_burn() {
        let device = Device::flex();
        let values: Vec<f32> = (0..70_000).map(|i| (i as f32 - 35_000.0) * 2e-4).collect();
        let x = Tensor::<2>::from_data(TensorData::new(values, [700, 100]), &device);
        let ours = gelu(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        let burns = activation::gelu(x).into_data().try_to_vec::<f32>().unwrap();
        // erf's error, scaled by |x| / 2, plus rounding.
        let worst = ours
            .iter()
            .zip(&burns)
            .enumerate()
            .map(|(i, (a, b))| (a - b).abs() / (1.0 + ((i as f32 - 35_000.0) * 2e-4).abs()))
            .fold(0.0f32, f32::max);
        assert!(
            worst < 5e-7,
            "largest difference relative to 1 + |x|: {worst:e}"
        );
    }
}
