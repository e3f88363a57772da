//! The mask-aware ResNet18 that decides which proposals are mitotic figures, ported from
//! OMG-Net's `Classifier` (`Models/SAM_Classifier.py`, github SZY1234567/OMG-Net) on torchvision's
//! `resnet18` (`torchvision/models/resnet.py`).
//!
//! torchvision's ResNet18 (a 7x7 stem convolution, max pooling, four stages of two basic blocks,
//! a global average and a linear head) with a 2-class head, plus a mask encoder: a
//! `Conv2d(1 -> 64, 7x7, stride 2, padding 3, with bias)` of the object's 0/1 mask whose output
//! is added to the stem convolution's, before the first batch norm. So the network sees the
//! crop around an object and which of its pixels the object covers. Class 1 is "mitotic
//! figure".
//!
//! The input is what OMG-Net's inference builds (`CellClassification` in
//! `Inference/CompleteInference.py`): the 64 x 64 RGB crop scaled to `[0, 1]` and normalised with
//! the ImageNet mean and standard deviation, and the mask crop as raw 0/1 floats.
//! [`Classifier::classify`] does this from [`mitoscope_core::Crop`]s.
//!
//! Checkpoints load as they are: OMG-Net's PyTorch Lightning checkpoints (the weights under
//! `state_dict`, named `backbone.*` and `mask_encoder.*`), safetensors files with the same key
//! names (what [`crate::train`] exports), and bare torchvision `resnet18` state dicts with a
//! 2-class `fc` (which have no mask encoder: see [`Classifier::from_weights`]). The
//! fields are named after the checkpoint keys; the batch norms are folded into the convolutions
//! before them at load, so this module is for inference only.

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use mitoscope_core::{CROP, Crop};
use pytorch_reader::{PickleValue, PytorchError, PytorchReader};

use crate::error::{ModelError, Result};
use crate::weights::{Conv2dSpec, Weights};

/// The ImageNet channel means the RGB input is normalised with (torchvision's `Normalize` in
/// OMG-Net's inference), for values scaled to `[0, 1]`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// The ImageNet channel standard deviations that go with [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// The number of classes of the head: 0 is anything else, 1 a mitotic figure.
pub const NUM_CLASSES: usize = 2;
/// The index of the class "mitotic figure".
pub const MITOTIC_FIGURE: usize = 1;

/// The network's name in error messages ("is this a ResNet18 classifier checkpoint?").
pub const MODEL: &str = "ResNet18 classifier";
/// `torch.nn.BatchNorm2d`'s default epsilon.
pub(crate) const BATCH_NORM_EPS: f64 = 1e-5;
/// Channels of the stem and of the four stages.
pub(crate) const STEM_CHANNELS: usize = 64;
pub(crate) const STAGE_CHANNELS: [usize; 4] = [64, 128, 256, 512];
/// Basic blocks per stage: ResNet18's `[2, 2, 2, 2]`.
pub(crate) const BLOCKS_PER_STAGE: usize = 2;
/// Crops per forward pass in [`Classifier::classify`]: bounds the activations (the stem's
/// output is 16 MB per 64 crops) whatever the number of objects on a field.
const CLASSIFY_BATCH: usize = 256;

/// Where a checkpoint keeps the backbone's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// OMG-Net's Lightning module: `backbone.*`, `mask_encoder.*` (under `state_dict.` in a
    /// `.ckpt`).
    OmgNet,
    /// A bare torchvision `resnet18` state dict: `conv1.weight`, `layer1.0.conv1.weight`...
    Torchvision,
}

/// Loads a `Conv2d` without bias followed by a `BatchNorm2d` in evaluation mode, folded into one
/// convolution: weights scaled per output channel, the shift as its bias.
///
/// NOTE: the batch norm is folded at load, as for TinyViT's `Conv2d_BN`: the same function up
/// to float rounding (well inside the parity test's tolerance), without a pass over every
/// activation per batch norm.
fn conv_bn(w: &Weights, conv: &str, bn: &str, spec: Conv2dSpec) -> Result<Conv2d> {
    let mut c = w.conv2d(conv, spec.no_bias())?;
    let (scale, shift) = w.batch_norm_affine(bn, spec.channels[1], BATCH_NORM_EPS)?;
    scale_output_channels(&mut c, scale);
    c.bias = Some(Param::from_tensor(shift));
    Ok(c)
}

/// Multiplies each output channel of `conv` (weight and bias) by `scale`.
fn scale_output_channels(conv: &mut Conv2d, scale: Tensor<1>) {
    let channels = scale.dims()[0];
    conv.weight =
        Param::from_tensor(conv.weight.val() * scale.clone().reshape([channels, 1, 1, 1]));
    if let Some(bias) = conv.bias.take() {
        conv.bias = Some(Param::from_tensor(bias.val() * scale));
    }
}

/// torchvision's `BasicBlock`: two 3x3 convolutions with batch norms and a residual, the first
/// convolution strided where the stage halves the resolution.
#[derive(Module, Debug)]
pub struct BasicBlock {
    /// `conv1` with `bn1` folded in.
    conv1: Conv2d,
    /// `conv2` with `bn2` folded in.
    conv2: Conv2d,
    /// `downsample.0` (a strided 1x1 convolution) with `downsample.1` folded in, where the
    /// block changes the shape.
    downsample: Option<Conv2d>,
}

impl BasicBlock {
    /// Loads a block from `c_in` to `c_out` channels with the given stride.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, c_in: usize, c_out: usize, stride: usize) -> Result<Self> {
        let conv3x3 = |c_in| Conv2dSpec::new(c_in, c_out, 3).padding(1);
        let downsample = if stride != 1 || c_in != c_out {
            let spec = Conv2dSpec::new(c_in, c_out, 1).stride(stride);
            Some(conv_bn(&w.at("downsample"), "0", "1", spec)?)
        } else {
            None
        };
        Ok(Self {
            conv1: conv_bn(w, "conv1", "bn1", conv3x3(c_in).stride(stride))?,
            conv2: conv_bn(w, "conv2", "bn2", conv3x3(c_out))?,
            downsample,
        })
    }

    /// `[batch, c_in, height, width] -> [batch, c_out, height / stride, width / stride]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(downsample) => downsample.forward(x.clone()),
            None => x.clone(),
        };
        let x = relu(self.conv1.forward(x));
        let x = self.conv2.forward(x);
        relu(x + identity)
    }
}

/// OMG-Net's mask-aware ResNet18 classifier.
#[derive(Module, Debug)]
pub struct Classifier {
    /// `backbone.conv1` with `backbone.bn1` folded in: its weight scaled, bn1's shift as its
    /// bias.
    conv1: Conv2d,
    /// `mask_encoder` scaled by `backbone.bn1` (bn1's shift is in `conv1`): absent for a bare
    /// torchvision backbone or a checkpoint trained without the mask.
    mask_encoder: Option<Conv2d>,
    /// `backbone.maxpool`: 3x3, stride 2, padding 1.
    maxpool: MaxPool2d,
    /// `backbone.layer1`: two blocks of 64 channels.
    layer1: Vec<BasicBlock>,
    /// `backbone.layer2`: 128 channels, half the resolution.
    layer2: Vec<BasicBlock>,
    /// `backbone.layer3`: 256 channels, half the resolution.
    layer3: Vec<BasicBlock>,
    /// `backbone.layer4`: 512 channels, half the resolution.
    layer4: Vec<BasicBlock>,
    /// `backbone.fc`: 512 features to [`NUM_CLASSES`] logits.
    fc: Linear,
}

impl Classifier {
    /// Loads a classifier checkpoint: OMG-Net's Lightning `.ckpt`, a bare torchvision
    /// `resnet18` state dict with a 2-class head (see [`Classifier::from_weights`]), or a
    /// safetensors file with either layout's key names (see [`crate::train::export`]), told
    /// apart by [`crate::weights::is_safetensors`].
    ///
    /// A Lightning checkpoint's `hyper_parameters` are honoured as OMG-Net's `forward` reads
    /// them: with `Mask_Input = false` the mask is ignored. A safetensors file has no such
    /// entries: its mask encoder is used whenever it holds one.
    ///
    /// # Errors
    ///
    /// [`ModelError::Unreadable`] when the file is neither a PyTorch checkpoint nor a
    /// safetensors file;
    /// [`ModelError::MissingKey`] naming `backbone.conv1.weight` for a checkpoint of another
    /// network (a SAM checkpoint, say); [`ModelError::InvalidInput`] for a configuration this
    /// port does not run (the 4-channel input, an activation after the head, a deeper ResNet);
    /// otherwise as [`Classifier::from_weights`].
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        if crate::weights::is_safetensors(path) {
            let weights = Weights::from_safetensors(path, MODEL, device)?;
            return Self::build(&weights, true);
        }
        let weights = Weights::from_checkpoint(path, MODEL, device)?;
        let mask_input = mask_input_of(path)?;
        Self::build(&weights, mask_input)
    }

    /// The classifier file at `path`, as [`Classifier::load`] reads it, as the bytes of a
    /// safetensors file that [`Classifier::from_weights`] (and so
    /// [`crate::ensemble::Ensemble::from_safetensors`]) builds into the same network: how the
    /// server hands a hospital's checkpoint to the browser, which reads no pickle.
    ///
    /// A safetensors file comes back as it is, after a check that it loads. A PyTorch checkpoint
    /// is written with the tensors the network reads, in `f32`, under the same keys; one trained
    /// with `Mask_Input = false` gets a mask encoder of zeros, which adds nothing, so the
    /// network computes what the checkpoint's does.
    ///
    /// # Errors
    ///
    /// As [`Classifier::load`], and [`ModelError::Io`] when the bytes cannot be written.
    pub fn portable(path: &Path) -> Result<Vec<u8>> {
        let device = Device::flex();
        if crate::weights::is_safetensors(path) {
            let bytes = std::fs::read(path).map_err(|err| ModelError::Unreadable {
                path: path.to_path_buf(),
                reason: err.to_string(),
            })?;
            let weights = Weights::from_safetensors_bytes(bytes.clone(), path, MODEL, &device)?;
            Self::build(&weights, true)?;
            return Ok(bytes);
        }
        let (weights, recorder) = Weights::from_checkpoint(path, MODEL, &device)?.recording();
        let mask_input = mask_input_of(path)?;
        let network = Self::build(&weights, mask_input)?;
        let mut tensors =
            std::mem::take(&mut *recorder.lock().unwrap_or_else(|poison| poison.into_inner()));
        if !network.uses_mask() && weights.contains("backbone.conv1.weight") {
            let zeros = |shape: Vec<usize>| {
                let values = vec![0.0; shape.iter().product()];
                (shape, values)
            };
            let (shape, values) = zeros(vec![STEM_CHANNELS, 1, 7, 7]);
            tensors.push(("mask_encoder.weight".into(), shape, values));
            let (shape, values) = zeros(vec![STEM_CHANNELS]);
            tensors.push(("mask_encoder.bias".into(), shape, values));
        }
        // One entry per key, whatever the network read twice.
        let tensors: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> = tensors
            .into_iter()
            .map(|(key, shape, values)| (key, (shape, values)))
            .collect();
        let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(key, (shape, values))| {
                let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                (key, shape, bytes)
            })
            .collect();
        let io = |err: safetensors::SafeTensorError| ModelError::Io {
            context: format!("cannot convert {} to safetensors", path.display()),
            source: std::io::Error::other(err.to_string()),
        };
        let views = encoded
            .iter()
            .map(|(key, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|view| (key.as_str(), view))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(io)?;
        safetensors::serialize(views, None).map_err(io)
    }

    /// Builds the classifier from `weights` positioned at the checkpoint's root, recognising
    /// the layout from the keys: OMG-Net's (`backbone.conv1.weight`) or torchvision's
    /// (`conv1.weight`).
    ///
    /// OMG-Net's layout needs its `mask_encoder`. A bare torchvision state dict has none: it
    /// loads as OMG-Net's network with `Mask_Input = false`, which ignores the mask. Its head
    /// must have [`NUM_CLASSES`] outputs: an ImageNet `resnet18` (1000 classes) is refused, its
    /// head classifying nothing here. Unlike [`Classifier::load`], the Lightning
    /// hyper-parameters are not read: the mask is used whenever the layout has an encoder.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingKey`] (the first missing key; `backbone.conv1.weight` when neither
    /// layout is recognised), [`ModelError::WrongShape`] (a head of another size among them),
    /// [`ModelError::InvalidInput`] for a deeper ResNet, or an unreadable tensor.
    pub fn from_weights(weights: &Weights) -> Result<Self> {
        Self::build(weights, true)
    }

    fn build(w: &Weights, mask_input: bool) -> Result<Self> {
        let layout = if w.contains("backbone.conv1.weight") {
            Layout::OmgNet
        } else if w.contains("conv1.weight") {
            Layout::Torchvision
        } else {
            return Err(w.missing("backbone.conv1.weight"));
        };
        let backbone = match layout {
            Layout::OmgNet => w.at("backbone"),
            Layout::Torchvision => w.clone(),
        };
        check_resnet18(&backbone)?;
        // The head first: an ImageNet resnet18 fails here, before 45 MB of weights are read.
        let features = STAGE_CHANNELS[3];
        if let Some(shape) = backbone.shape("fc.weight")
            && shape != [NUM_CLASSES, features]
        {
            return Err(backbone.wrong_shape("fc.weight", vec![NUM_CLASSES, features], shape));
        }

        // Stem: conv1 and the mask encoder share bn1, which follows their sum.
        let stem = Conv2dSpec::new(3, STEM_CHANNELS, 7).stride(2).padding(3);
        let mut conv1 = backbone.conv2d("conv1", stem.no_bias())?;
        let mut mask_encoder = match layout {
            Layout::OmgNet if mask_input => {
                let spec = Conv2dSpec::new(1, STEM_CHANNELS, 7).stride(2).padding(3);
                Some(w.conv2d("mask_encoder", spec)?)
            }
            _ => None,
        };
        let (scale, shift) = backbone.batch_norm_affine("bn1", STEM_CHANNELS, BATCH_NORM_EPS)?;
        // bn1(conv1(x) + mask_encoder(m)) = conv1(x) * scale + shift + mask_encoder(m) * scale.
        scale_output_channels(&mut conv1, scale.clone());
        conv1.bias = Some(Param::from_tensor(shift));
        if let Some(encoder) = mask_encoder.as_mut() {
            scale_output_channels(encoder, scale);
        }

        // Stages 2 to 4 halve the resolution in their first block.
        let [c1, c2, c3, c4] = STAGE_CHANNELS;
        let layer1 = load_stage(&backbone.at("layer1"), STEM_CHANNELS, c1, 1)?;
        let layer2 = load_stage(&backbone.at("layer2"), c1, c2, 2)?;
        let layer3 = load_stage(&backbone.at("layer3"), c2, c3, 2)?;
        let layer4 = load_stage(&backbone.at("layer4"), c3, c4, 2)?;
        let fc = backbone.linear("fc", c4, NUM_CLASSES, true)?;

        let unused = w.unused_keys();
        tracing::info!(
            ?layout,
            mask = mask_encoder.is_some(),
            unused_keys = unused.len(),
            "classifier loaded"
        );
        if !unused.is_empty() {
            tracing::debug!(?unused, "checkpoint keys the classifier does not use");
        }
        Ok(Self {
            conv1,
            mask_encoder,
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            fc,
        })
    }

    /// Whether the network reads the mask (false for a bare torchvision backbone or a
    /// checkpoint trained with `Mask_Input = false`).
    pub fn uses_mask(&self) -> bool {
        self.mask_encoder.is_some()
    }

    /// The device the network's weights live on.
    pub fn device(&self) -> Device {
        self.fc.weight.device()
    }

    /// `rgb` `[batch, 3, height, width]` (normalised, see [`IMAGENET_MEAN`]) and `mask`
    /// `[batch, 1, height, width]` (0 or 1) to logits `[batch, NUM_CLASSES]`.
    ///
    /// The mask is ignored when the network has no mask encoder ([`Classifier::uses_mask`]).
    /// Other sizes run as well; the published weights were trained on 64 x 64 crops.
    pub fn forward(&self, rgb: Tensor<4>, mask: Tensor<4>) -> Tensor<2> {
        // Stem, with bn1 folded: conv1(rgb) + mask_encoder(mask), then ReLU and max pooling.
        // [batch, 64, height / 4, width / 4].
        let mut x = self.conv1.forward(rgb);
        if let Some(encoder) = &self.mask_encoder {
            x = x + encoder.forward(mask);
        }
        let x = self.maxpool.forward(relu(x));

        // Four stages: [batch, 512, height / 32, width / 32].
        let x = [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .flatten()
            .fold(x, |x, block| block.forward(x));

        // Global average over the positions: [batch, 512].
        let x = global_average_pool(x);

        // Head: [batch, NUM_CLASSES]. (OMG-Net's `activation` after it is `Identity`.)
        self.fc.forward(x)
    }

    /// The network's input for `crops`: RGB `[n, 3, 64, 64]` scaled to `[0, 1]` and
    /// normalised with the ImageNet statistics, mask `[n, 1, 64, 64]` as 0/1 (any non-zero
    /// byte is 1).
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] when a crop is not [`CROP`] x [`CROP`].
    pub fn input(&self, crops: &[Crop]) -> Result<(Tensor<4>, Tensor<4>)> {
        input_tensors(crops, &self.device())
    }

    /// The probability that each crop shows a mitotic figure: the softmax of the logits, class
    /// [`MITOTIC_FIGURE`], as OMG-Net's `predict_step`.
    ///
    /// # Errors
    ///
    /// As [`Classifier::input`]; [`ModelError::Readback`] if the device's answer cannot be read.
    pub fn classify(&self, crops: &[Crop]) -> Result<Vec<f32>> {
        let _span = tracing::debug_span!("classify", crops = crops.len()).entered();
        let mut probabilities = Vec::with_capacity(crops.len());
        for batch in crops.chunks(CLASSIFY_BATCH) {
            probabilities.extend(read_back(self.probabilities(batch)?.into_data())?);
        }
        Ok(probabilities)
    }

    /// [`Classifier::classify`]'s probabilities `[n, 1]` for `crops`, still on the device: for
    /// a caller that reads them back itself (asynchronously, in a browser).
    ///
    /// # Errors
    ///
    /// As [`Classifier::input`].
    pub fn probabilities(&self, crops: &[Crop]) -> Result<Tensor<2>> {
        let (rgb, mask) = self.input(crops)?;
        Ok(softmax(self.forward(rgb, mask), 1).narrow(1, MITOTIC_FIGURE, 1))
    }
}

/// Probabilities read back from the device as `f32`.
///
/// # Errors
///
/// [`ModelError::Readback`] when the data is not `f32`.
pub(crate) fn read_back(data: TensorData) -> Result<Vec<f32>> {
    data.try_into_vec::<f32>()
        .map_err(|err| ModelError::Readback(format!("{err:?}")))
}

/// The network's input for `crops` on `device`, as [`Classifier::input`]; shared with training.
///
/// # Errors
///
/// As [`Classifier::input`].
pub(crate) fn input_tensors(crops: &[Crop], device: &Device) -> Result<(Tensor<4>, Tensor<4>)> {
    let side = CROP as usize;
    let plane = side * side;
    let mut rgb = vec![0f32; crops.len() * 3 * plane];
    let mut mask = vec![0f32; crops.len() * plane];
    for (i, crop) in crops.iter().enumerate() {
        if crop.rgb.len() != 3 * plane || crop.mask.len() != plane {
            return Err(ModelError::InvalidInput(format!(
                "crop {i} holds {} RGB and {} mask bytes, expected {} and {plane} \
                 (a {side} x {side} crop)",
                crop.rgb.len(),
                crop.mask.len(),
                3 * plane
            )));
        }
        let rgb = &mut rgb[i * 3 * plane..(i + 1) * 3 * plane];
        for (p, pixel) in crop.rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                // As torchvision: ToTensor divides by 255, Normalize subtracts and divides.
                rgb[c * plane + p] =
                    (f32::from(pixel[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            }
        }
        for (m, &byte) in mask[i * plane..(i + 1) * plane].iter_mut().zip(&crop.mask) {
            *m = f32::from(u8::from(byte != 0));
        }
    }
    let n = crops.len();
    Ok((
        Tensor::from_data(TensorData::new(rgb, [n, 3, side, side]), device),
        Tensor::from_data(TensorData::new(mask, [n, 1, side, side]), device),
    ))
}

/// Loads one stage of [`BLOCKS_PER_STAGE`] basic blocks from `c_in` to `c_out` channels, the
/// first with `stride`.
fn load_stage(w: &Weights, c_in: usize, c_out: usize, stride: usize) -> Result<Vec<BasicBlock>> {
    (0..BLOCKS_PER_STAGE)
        .map(|i| {
            let (c_in, stride) = if i == 0 { (c_in, stride) } else { (c_out, 1) };
            BasicBlock::load(&w.at(i), c_in, c_out, stride)
        })
        .collect()
}

/// Refuses deeper ResNets: torchvision's ResNet34 has the same first two blocks per stage as
/// ResNet18 and would otherwise load with its later blocks silently dropped.
fn check_resnet18(backbone: &Weights) -> Result<()> {
    for stage in 1..=STAGE_CHANNELS.len() {
        let name = format!("layer{stage}.{BLOCKS_PER_STAGE}.conv1.weight");
        // `shape`, not `contains`: random weights contain every key but have no shapes.
        if backbone.shape(&name).is_some() {
            return Err(ModelError::InvalidInput(format!(
                "checkpoint {}: key `{}` belongs to a ResNet deeper than ResNet18",
                backbone.path().display(),
                backbone.key(&name)
            )));
        }
    }
    Ok(())
}

/// Whether the network of a Lightning checkpoint adds the mask, from
/// `hyper_parameters.config.BASEMODEL` as OMG-Net's `Classifier.forward` reads it: with
/// `Mask_Input` and `Input_Type = "3_Channel"`. True when the file has no such entries (a bare
/// state dict): the published configuration.
///
/// # Errors
///
/// [`ModelError::InvalidInput`] for the 4-channel input (`encoder_4d` in place of the stem
/// convolution) or an activation other than `Identity` after the head, neither of which the
/// published classifiers use; [`ModelError::Unreadable`] if the pickle cannot be read again.
fn mask_input_of(path: &Path) -> Result<bool> {
    let hyper_parameters = match PytorchReader::read_pickle_data(path, Some("hyper_parameters")) {
        Ok(value) => value,
        Err(PytorchError::KeyNotFound(_) | PytorchError::InvalidFormat(_)) => return Ok(true),
        Err(err) => {
            return Err(ModelError::Unreadable {
                path: path.to_path_buf(),
                reason: err.to_string(),
            });
        }
    };
    let Some(base) = entry(&hyper_parameters, "config").and_then(|c| entry(c, "BASEMODEL")) else {
        return Ok(true);
    };
    let text = |key| match entry(base, key) {
        Some(PickleValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let unsupported = |what: String| {
        Err(ModelError::InvalidInput(format!(
            "checkpoint {}: {what}; only the published configuration (mask added to the first \
             convolution, Activation \"Identity\") is supported",
            path.display()
        )))
    };
    if let Some(activation) = text("Activation").filter(|&a| a != "Identity") {
        return unsupported(format!(
            "the classifier applies Activation \"{activation}\" to its logits"
        ));
    }
    let mask_input = matches!(
        entry(base, "Mask_Input"),
        Some(PickleValue::Bool(true)) | None
    );
    match text("Input_Type") {
        Some("4_Channel") if mask_input => {
            unsupported("the classifier was trained with Input_Type \"4_Channel\"".into())
        }
        Some("3_Channel") | None => Ok(mask_input),
        // The reference adds the mask for "3_Channel" only.
        Some(_) => Ok(false),
    }
}

/// The value under `key` of a pickled dict.
fn entry<'a>(value: &'a PickleValue, key: &str) -> Option<&'a PickleValue> {
    match value {
        PickleValue::Dict(dict) => dict.get(key),
        _ => None,
    }
}

/// torchvision's `avgpool` and `flatten`: `[batch, channels, height, width]` averaged over the
/// positions to `[batch, channels]`; shared by the inference and the trainable network.
pub(crate) fn global_average_pool(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, _, _] = x.dims();
    x.mean_dim(2).mean_dim(3).reshape([batch, channels])
}
