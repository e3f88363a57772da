//! OMG-Net's mask-aware ResNet18 as a trainable network: the architecture of
//! [`crate::classifier::Classifier`] with real batch norms instead of folded ones.
//!
//! torchvision's `resnet18` (`torchvision/models/resnet.py`) with a 2-class head, and OMG-Net's
//! mask encoder (`Models/SAM_Classifier.py`): `bn1(conv1(rgb) + mask_encoder(mask))`. The fields
//! are named after the checkpoint keys (`backbone.conv1`, `backbone.layer1.0.bn2`, `mask_encoder`,
//! ...), so the export (`super::export`) writes the names PyTorch Lightning would.
//!
//! The initialisation is torchvision's, seeded: convolutions kaiming-normal with `fan_out` and the
//! ReLU gain, batch norms weight 1 and bias 0, the head PyTorch's `Linear` default. The mask
//! encoder, which lives outside torchvision's network and so escapes its initialisation loop,
//! keeps PyTorch's `Conv2d` default. Each tensor draws from its own generator, seeded by the seed
//! and its key, so adding a layer does not change the others.

use burn::module::{Flag, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{batch_norm, batch_norm_train};
use mitoscope_core::Crop;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::classifier::{
    BATCH_NORM_EPS, BLOCKS_PER_STAGE, NUM_CLASSES, STAGE_CHANNELS, STEM_CHANNELS,
    global_average_pool, input_tensors,
};
use crate::error::Result;
use crate::weights::Conv2dSpec;

/// `torch.nn.BatchNorm2d`'s default momentum of the running statistics.
const BATCH_NORM_MOMENTUM: f64 = 0.1;

/// PyTorch's `BatchNorm2d`, fields named after its `state_dict`.
///
/// In training (on an autodiff device, not [`Module::valid`]) it normalises with the batch's
/// statistics and moves the running ones towards them with momentum 0.1, the variance taken
/// unbiased as PyTorch does; otherwise it normalises with the running statistics.
///
/// NOTE: burn's own `BatchNorm` feeds the biased batch variance to its running variance; PyTorch
/// uses the unbiased one, which this layer follows so that an exported network evaluates as it
/// would in PyTorch.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// `weight` (gamma).
    pub weight: Param<Tensor<1>>,
    /// `bias` (beta).
    pub bias: Param<Tensor<1>>,
    /// `running_mean`.
    pub running_mean: RunningState<Tensor<1>>,
    /// `running_var`.
    pub running_var: RunningState<Tensor<1>>,
    /// `num_batches_tracked`: training batches seen, as a one-element float tensor (exact up to
    /// 2^24 batches).
    pub num_batches_tracked: RunningState<Tensor<1>>,
    /// Whether the layer trains (batch statistics) on an autodiff device.
    training: Param<Flag>,
}

impl BatchNorm2d {
    /// A batch norm of `channels` in PyTorch's initial state: weight 1, bias 0, running mean 0,
    /// running variance 1.
    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            num_batches_tracked: RunningState::new(Tensor::zeros([1], device)),
            training: Param::from_bool(true),
        }
    }

    /// `[batch, channels, height, width]` normalised per channel.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        if !(x.is_autodiff() && self.training.is_enabled()) {
            return batch_norm(
                x,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                BATCH_NORM_EPS,
            );
        }

        let [batch, _, height, width] = x.dims();
        let out = batch_norm_train(x, self.weight.val(), self.bias.val(), BATCH_NORM_EPS);
        // PyTorch's running variance is unbiased: n / (n - 1) times the batch's.
        let n = (batch * height * width) as f64;
        let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        let m = BATCH_NORM_MOMENTUM;
        let mean = settled(&self.running_mean)
            .to_device(&device)
            .mul_scalar(1.0 - m)
            + out.mean.detach().mul_scalar(m);
        let var = settled(&self.running_var)
            .to_device(&device)
            .mul_scalar(1.0 - m)
            + out.variance.detach().mul_scalar(m * unbiased);
        let count = settled(&self.num_batches_tracked).add_scalar(1.0);
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        self.num_batches_tracked.update(count.detach());
        out.output
    }
}

/// The value of a running state with every pending update folded in.
///
/// NOTE: `RunningState::value_sync` folds in only the calling thread's pending update, so steps
/// taken from different threads (a worker pool) would start from a stale value; `valid` folds in
/// every thread's (the copy it returns is dropped).
fn settled(state: &RunningState<Tensor<1>>) -> Tensor<1> {
    let _ = state.valid();
    state.value()
}

/// `downsample` of a torchvision `BasicBlock`: a strided 1x1 convolution and a batch norm.
#[derive(Module, Debug)]
pub struct Downsample {
    /// `downsample.0`.
    pub conv: Conv2d,
    /// `downsample.1`.
    pub bn: BatchNorm2d,
}

/// torchvision's `BasicBlock` with its batch norms.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// `conv1`: 3x3, strided where the stage halves the resolution.
    pub conv1: Conv2d,
    /// `bn1`.
    pub bn1: BatchNorm2d,
    /// `conv2`: 3x3.
    pub conv2: Conv2d,
    /// `bn2`.
    pub bn2: BatchNorm2d,
    /// `downsample`, where the block changes the shape.
    pub downsample: Option<Downsample>,
}

impl BasicBlock {
    /// `[batch, c_in, height, width] -> [batch, c_out, height / stride, width / stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let x = relu(self.bn1.forward(self.conv1.forward(x)));
        let x = self.bn2.forward(self.conv2.forward(x));
        relu(x + identity)
    }
}

/// OMG-Net's mask-aware ResNet18 with trainable batch norms.
///
/// Build it with [`TrainableClassifier::new`] on an autodiff device (`device.autodiff()`) to
/// train; [`Module::valid`] gives the evaluation network (running statistics, no gradients).
#[derive(Module, Debug)]
pub struct TrainableClassifier {
    /// `backbone.conv1`: 7x7, stride 2, padding 3, no bias.
    pub conv1: Conv2d,
    /// `mask_encoder`: 7x7, stride 2, padding 3, with bias; its output is added to `conv1`'s.
    pub mask_encoder: Conv2d,
    /// `backbone.bn1`, after the sum.
    pub bn1: BatchNorm2d,
    /// `backbone.maxpool`: 3x3, stride 2, padding 1.
    pub maxpool: MaxPool2d,
    /// `backbone.layer1`: two blocks of 64 channels.
    pub layer1: Vec<BasicBlock>,
    /// `backbone.layer2`: 128 channels, half the resolution.
    pub layer2: Vec<BasicBlock>,
    /// `backbone.layer3`: 256 channels, half the resolution.
    pub layer3: Vec<BasicBlock>,
    /// `backbone.layer4`: 512 channels, half the resolution.
    pub layer4: Vec<BasicBlock>,
    /// `backbone.fc`: 512 features to [`NUM_CLASSES`] logits.
    pub fc: Linear,
}

/// How a tensor is initialised, as PyTorch does.
#[derive(Debug, Clone, Copy)]
enum Init {
    /// `kaiming_normal_(mode="fan_out", nonlinearity="relu")`: `N(0, 2 / fan_out)`.
    KaimingNormalFanOut,
    /// The default of `Conv2d` and `Linear` (`kaiming_uniform_(a=sqrt(5))`, and the bias
    /// alike): `U(-1 / sqrt(fan_in), 1 / sqrt(fan_in))`.
    UniformFanIn,
}

/// Draws the seeded initial values of the tensor `key`.
struct Initializer {
    seed: u64,
}

impl Initializer {
    /// `count` values for the tensor `key`, with the fans of its layer.
    fn values(
        &self,
        key: &str,
        count: usize,
        init: Init,
        fan_in: usize,
        fan_out: usize,
    ) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        // One stream per key (FNV-1a of its name): the order of creation does not matter.
        let stream = key.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
        });
        rng.set_stream(stream);
        match init {
            Init::KaimingNormalFanOut => {
                let std = (2.0 / fan_out as f64).sqrt();
                (0..count)
                    .map(|_| (normal(&mut rng) * std) as f32)
                    .collect()
            }
            Init::UniformFanIn => {
                let bound = 1.0 / (fan_in as f64).sqrt();
                (0..count)
                    .map(|_| ((2.0 * unit(&mut rng) - 1.0) * bound) as f32)
                    .collect()
            }
        }
    }

    /// The `Conv2d` of `spec` (one group), its weight drawn with `init` and its bias, if any,
    /// with PyTorch's default.
    fn conv(&self, key: &str, spec: Conv2dSpec, init: Init, device: &Device) -> Conv2d {
        let ([c_in, c_out], k) = (spec.channels, spec.kernel);
        let (fan_in, fan_out) = (c_in * k * k, c_out * k * k);
        let shape = [c_out, c_in, k, k];
        let count = shape.iter().product();
        let weight = self.values(&format!("{key}.weight"), count, init, fan_in, fan_out);
        let bias = spec.bias.then(|| {
            let key = format!("{key}.bias");
            let values = self.values(&key, c_out, Init::UniformFanIn, fan_in, fan_out);
            Param::from_tensor(Tensor::from_data(TensorData::new(values, [c_out]), device))
        });
        let p = spec.padding;
        Conv2d {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, shape), device)),
            bias,
            stride: [spec.stride; 2],
            kernel_size: [k; 2],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(p, p, p, p),
        }
    }

    /// torchvision's `BasicBlock` under `key`, from `c_in` to `c_out` channels.
    fn block(
        &self,
        key: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
        device: &Device,
    ) -> BasicBlock {
        let conv = |name: &str, spec: Conv2dSpec| {
            let key = format!("{key}.{name}");
            self.conv(&key, spec.no_bias(), Init::KaimingNormalFanOut, device)
        };
        let conv3x3 = |c_in| Conv2dSpec::new(c_in, c_out, 3).padding(1);
        let downsample = (stride != 1 || c_in != c_out).then(|| Downsample {
            conv: conv(
                "downsample.0",
                Conv2dSpec::new(c_in, c_out, 1).stride(stride),
            ),
            bn: BatchNorm2d::new(c_out, device),
        });
        BasicBlock {
            conv1: conv("conv1", conv3x3(c_in).stride(stride)),
            bn1: BatchNorm2d::new(c_out, device),
            conv2: conv("conv2", conv3x3(c_out)),
            bn2: BatchNorm2d::new(c_out, device),
            downsample,
        }
    }
}

/// A uniform draw in `[0, 1)` from the top 53 bits of a 64-bit draw.
fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box-Muller, the cosine branch).
fn normal(rng: &mut impl RngCore) -> f64 {
    // 1 - u lies in (0, 1]: the logarithm stays finite.
    let radius = (-2.0 * (1.0 - unit(rng)).ln()).sqrt();
    radius * (std::f64::consts::TAU * unit(rng)).cos()
}

/// The maxpool of torchvision's stem.
pub(crate) fn stem_maxpool() -> MaxPool2d {
    MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init()
}

impl TrainableClassifier {
    /// A freshly initialised network on `device` (see the module documentation): the same seed
    /// gives the same weights.
    pub fn new(seed: u64, device: &Device) -> Self {
        let init = Initializer { seed };
        let stem = |c_in| Conv2dSpec::new(c_in, STEM_CHANNELS, 7).stride(2).padding(3);
        let stage = |key: &str, c_in: usize, c_out: usize, stride: usize| -> Vec<BasicBlock> {
            (0..BLOCKS_PER_STAGE)
                .map(|i| {
                    let (c_in, stride) = if i == 0 { (c_in, stride) } else { (c_out, 1) };
                    init.block(&format!("backbone.{key}.{i}"), c_in, c_out, stride, device)
                })
                .collect()
        };
        let [c1, c2, c3, c4] = STAGE_CHANNELS;
        // PyTorch stores the head as [out, in] and draws it in that order; burn keeps [in, out].
        let fc_weight = init.values(
            "backbone.fc.weight",
            NUM_CLASSES * c4,
            Init::UniformFanIn,
            c4,
            NUM_CLASSES,
        );
        let fc_bias = init.values(
            "backbone.fc.bias",
            NUM_CLASSES,
            Init::UniformFanIn,
            c4,
            NUM_CLASSES,
        );
        let fc_weight =
            Tensor::<2>::from_data(TensorData::new(fc_weight, [NUM_CLASSES, c4]), device);
        Self {
            conv1: init.conv(
                "backbone.conv1",
                stem(3).no_bias(),
                Init::KaimingNormalFanOut,
                device,
            ),
            mask_encoder: init.conv("mask_encoder", stem(1), Init::UniformFanIn, device),
            bn1: BatchNorm2d::new(STEM_CHANNELS, device),
            maxpool: stem_maxpool(),
            layer1: stage("layer1", STEM_CHANNELS, c1, 1),
            layer2: stage("layer2", c1, c2, 2),
            layer3: stage("layer3", c2, c3, 2),
            layer4: stage("layer4", c3, c4, 2),
            fc: Linear {
                weight: Param::from_tensor(fc_weight.transpose()),
                bias: Some(Param::from_tensor(Tensor::from_data(
                    TensorData::new(fc_bias, [NUM_CLASSES]),
                    device,
                ))),
            },
        }
    }

    /// The device the network's weights live on.
    pub fn device(&self) -> Device {
        self.fc.weight.device()
    }

    /// The network's input for `crops` on its device, as
    /// [`crate::classifier::Classifier::input`].
    ///
    /// # Errors
    ///
    /// [`crate::ModelError::InvalidInput`] when a crop is not 64 x 64.
    pub fn input(&self, crops: &[Crop]) -> Result<(Tensor<4>, Tensor<4>)> {
        input_tensors(crops, &self.device())
    }

    /// `rgb` `[batch, 3, height, width]` (normalised) and `mask` `[batch, 1, height, width]`
    /// (0 or 1) to logits `[batch, NUM_CLASSES]`.
    ///
    /// On an autodiff device the batch norms train (batch statistics, running statistics
    /// updated); after [`Module::valid`] they use their running statistics.
    pub fn forward(&self, rgb: Tensor<4>, mask: Tensor<4>) -> Tensor<2> {
        // Stem: bn1(conv1(rgb) + mask_encoder(mask)), ReLU, max pooling.
        // [batch, 64, height / 4, width / 4].
        let x = self.conv1.forward(rgb) + self.mask_encoder.forward(mask);
        let x = self.maxpool.forward(relu(self.bn1.forward(x)));

        // Four stages: [batch, 512, height / 32, width / 32].
        let x = [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .flatten()
            .fold(x, |x, block| block.forward(x));

        // Global average over the positions: [batch, 512].
        let x = global_average_pool(x);

        // Head: [batch, NUM_CLASSES].
        self.fc.forward(x)
    }

    /// The basic blocks with their keys (`backbone.layer1.0`, ...).
    pub(crate) fn blocks(&self) -> impl Iterator<Item = (String, &BasicBlock)> {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .enumerate()
            .flat_map(|(stage, blocks)| {
                blocks
                    .iter()
                    .enumerate()
                    .map(move |(i, block)| (format!("backbone.layer{}.{i}", stage + 1), block))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    fn mean_std(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    #[test]
    fn the_initialisation_is_torchvisions() {
        let net = TrainableClassifier::new(0, &Device::flex());
        // kaiming_normal_(fan_out, relu): std sqrt(2 / (64 * 7 * 7)) for the stem, and
        // sqrt(2 / (512 * 3 * 3)) in the last stage.
        for (weight, fan_out) in [
            (net.conv1.weight.val(), 64 * 49),
            (net.layer4[1].conv2.weight.val(), 512 * 9),
        ] {
            let (mean, std) = mean_std(&floats(weight));
            let expected = (2.0 / fan_out as f64).sqrt();
            assert!(mean.abs() < 0.05 * expected, "mean {mean}");
            assert!(
                (std / expected - 1.0).abs() < 0.03,
                "std {std} vs {expected}"
            );
        }
        // PyTorch's default for the mask encoder and the head: U(+-1 / sqrt(fan_in)).
        for (values, fan_in) in [
            (floats(net.mask_encoder.weight.val()), 49),
            (floats(net.fc.weight.val()), 512),
        ] {
            let bound = 1.0 / (fan_in as f32).sqrt();
            assert!(values.iter().all(|v| v.abs() <= bound));
            let (_, std) = mean_std(&values);
            let expected = f64::from(bound) / 3f64.sqrt();
            assert!(
                (std / expected - 1.0).abs() < 0.1,
                "std {std} vs {expected}"
            );
        }
        assert!(floats(net.bn1.weight.val()).iter().all(|&w| w == 1.0));
        assert!(
            floats(net.layer2[0].bn2.bias.val())
                .iter()
                .all(|&b| b == 0.0)
        );
    }

    #[test]
    fn batch_norm_tracks_pytorchs_running_statistics() {
        // Channel 0 holds 1, 2, 3, 4 (mean 2.5, unbiased variance 5/3); channel 1 is constant.
        let device = Device::flex().autodiff();
        let bn = BatchNorm2d::new(2, &device);
        let x = Tensor::<4>::from_floats([[[[1.0, 2.0], [3.0, 4.0]], [[7.0; 2]; 2]]], &device);
        let y = floats(bn.forward(x.clone()));
        // Normalised with the biased variance 1.25.
        let expected = (1.0 - 2.5) / (1.25f32 + 1e-5).sqrt();
        assert!((y[0] - expected).abs() < 1e-5, "{y:?}");

        let valid = bn.valid();
        let mean = floats(valid.running_mean.value());
        let var = floats(valid.running_var.value());
        let count = floats(valid.num_batches_tracked.value());
        assert!(
            (mean[0] - 0.25).abs() < 1e-6 && (mean[1] - 0.7).abs() < 1e-6,
            "{mean:?}"
        );
        assert!((var[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6, "{var:?}");
        assert!((var[1] - 0.9).abs() < 1e-6, "{var:?}");
        assert_eq!(count, [1.0]);

        // A second step from another thread starts from the first one's statistics.
        let two = BatchNorm2d::new(2, &device);
        two.forward(x.clone());
        std::thread::scope(|scope| {
            scope.spawn(|| two.forward(x.clone()));
        });
        let mean2 = floats(two.valid().running_mean.value());
        assert!((mean2[0] - (0.9 * 0.25 + 0.25)).abs() < 1e-6, "{mean2:?}");
        assert_eq!(floats(two.valid().num_batches_tracked.value()), [2.0]);

        // In evaluation, the running statistics normalise and nothing moves.
        let y = floats(valid.forward(x.inner()));
        assert!((y[0] - (1.0 - 0.25) / (var[0] + 1e-5).sqrt()).abs() < 1e-5);
        assert_eq!(floats(valid.num_batches_tracked.value()), [1.0]);
    }
}
