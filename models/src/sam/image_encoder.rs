//! SAM's ViT image encoder (`segment_anything/modeling/image_encoder.py`): patch embedding,
//! absolute position embedding, transformer blocks with windowed or global attention and
//! decomposed relative position biases, and the convolutional neck.

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::error::Result;
use crate::sam::common::{LayerNorm2d, MlpActivation, MlpBlock};
use crate::weights::{Conv2dSpec, Weights};

/// The sizes of a ViT image encoder; the constructors give the published models.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEncoderConfig {
    /// Side of the square input, in pixels.
    pub img_size: usize,
    /// Side of a patch, in pixels.
    pub patch_size: usize,
    /// Input channels.
    pub in_chans: usize,
    /// Token width.
    pub embed_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads per block.
    pub num_heads: usize,
    /// Hidden width of the MLP as a multiple of `embed_dim`.
    pub mlp_ratio: f64,
    /// Channels of the output embedding.
    pub out_chans: usize,
    /// Side of the attention windows of the windowed blocks.
    pub window_size: usize,
    /// Blocks that attend globally instead of within windows.
    pub global_attn_indexes: Vec<usize>,
}

impl ImageEncoderConfig {
    /// ViT-B, as `build_sam_vit_b` (`sam_vit_b_01ec64.pth`).
    pub fn vit_b() -> Self {
        Self::sam(768, 12, 12, vec![2, 5, 8, 11])
    }

    /// ViT-L, as `build_sam_vit_l` (`sam_vit_l_0b3195.pth`).
    pub fn vit_l() -> Self {
        Self::sam(1024, 24, 16, vec![5, 11, 17, 23])
    }

    /// ViT-H, as `build_sam_vit_h` (`sam_vit_h_4b8939.pth`).
    pub fn vit_h() -> Self {
        Self::sam(1280, 32, 16, vec![7, 15, 23, 31])
    }

    fn sam(embed_dim: usize, depth: usize, num_heads: usize, global: Vec<usize>) -> Self {
        Self {
            img_size: 1024,
            patch_size: 16,
            in_chans: 3,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            out_chans: 256,
            window_size: 14,
            global_attn_indexes: global,
        }
    }

    /// Side of the token grid (and of the output embedding).
    pub fn grid_size(&self) -> usize {
        self.img_size / self.patch_size
    }
}

/// `ImageEncoderViT`.
#[derive(Module, Debug)]
pub struct ImageEncoderVit {
    patch_embed: PatchEmbed,
    pos_embed: Param<Tensor<4>>,
    blocks: Vec<Block>,
    neck_0: Conv2d,
    neck_1: LayerNorm2d,
    neck_2: Conv2d,
    neck_3: LayerNorm2d,
}

impl ImageEncoderVit {
    /// Loads the encoder from `w`, positioned at `image_encoder`.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, config: &ImageEncoderConfig) -> Result<Self> {
        let grid = config.grid_size();
        let dim = config.embed_dim;
        let out = config.out_chans;
        // Loaded in the checkpoint's order, so that the first bad key is the one reported.
        let patch_embed = PatchEmbed::load(&w.at("patch_embed"), config)?;
        let pos_embed = w.param("pos_embed", [1, grid, grid, dim])?;
        let blocks = (0..config.depth)
            .map(|i| {
                let global = config.global_attn_indexes.contains(&i);
                let window = if global { 0 } else { config.window_size };
                Block::load(&w.at("blocks").at(i), config, window)
            })
            .collect::<Result<Vec<_>>>()?;
        // `neck` is an `nn.Sequential`: its layers are keys `neck.0` to `neck.3`.
        Ok(Self {
            patch_embed,
            pos_embed,
            blocks,
            neck_0: w.conv2d("neck.0", Conv2dSpec::new(dim, out, 1).no_bias())?,
            neck_1: LayerNorm2d::load(&w.at("neck.1"), out, 1e-6)?,
            neck_2: w.conv2d("neck.2", Conv2dSpec::new(out, out, 3).padding(1).no_bias())?,
            neck_3: LayerNorm2d::load(&w.at("neck.3"), out, 1e-6)?,
        })
    }

    /// `[batch, 3, img_size, img_size]` (normalised, padded) to the image embedding
    /// `[batch, out_chans, grid, grid]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // Patches to tokens: [batch, grid, grid, embed_dim].
        let x = self.patch_embed.forward(x);
        let x = x + self.pos_embed.val();

        // Transformer blocks.
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));

        // Neck: [batch, embed_dim, grid, grid] -> [batch, out_chans, grid, grid].
        let x = x.permute([0, 3, 1, 2]);
        let x = self.neck_1.forward(self.neck_0.forward(x));
        self.neck_3.forward(self.neck_2.forward(x))
    }
}

/// `PatchEmbed`: a convolution whose kernel equals its stride.
#[derive(Module, Debug)]
struct PatchEmbed {
    /// `proj.weight` flattened to `[in_chans * patch * patch, embed_dim]`.
    weight: Param<Tensor<2>>,
    bias: Param<Tensor<1>>,
    #[module(skip)]
    patch: usize,
}

impl PatchEmbed {
    fn load(w: &Weights, config: &ImageEncoderConfig) -> Result<Self> {
        let (c, p, dim) = (config.in_chans, config.patch_size, config.embed_dim);
        let weight = w.tensor("proj.weight", [dim, c, p, p])?;
        Ok(Self {
            weight: Param::from_tensor(weight.reshape([dim, c * p * p]).transpose()),
            bias: w.param("proj.bias", [dim])?,
            patch: p,
        })
    }

    /// `[batch, channels, height, width] -> [batch, height / p, width / p, embed_dim]`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // NOTE: computed as one matrix product over the patches rather than a strided
        // convolution: the same sums, and several times faster on the CPU backends.
        let [b, c, h, w] = x.dims();
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        let patches = x
            .reshape([b, c, gh, p, gw, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b * gh * gw, c * p * p]);
        let tokens = patches.matmul(self.weight.val()) + self.bias.val().unsqueeze_dim(0);
        tokens.reshape([b, gh, gw, self.weight.dims()[1]])
    }
}

/// `Block`: pre-norm attention (windowed when `window > 0`) and MLP, both residual.
#[derive(Module, Debug)]
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp: MlpBlock,
    #[module(skip)]
    window: usize,
}

impl Block {
    fn load(w: &Weights, config: &ImageEncoderConfig, window: usize) -> Result<Self> {
        let dim = config.embed_dim;
        let attn_size = if window > 0 {
            window
        } else {
            config.grid_size()
        };
        let hidden = (dim as f64 * config.mlp_ratio) as usize;
        Ok(Self {
            norm1: w.layer_norm("norm1", dim, 1e-6)?,
            attn: Attention::load(&w.at("attn"), dim, config.num_heads, attn_size)?,
            norm2: w.layer_norm("norm2", dim, 1e-6)?,
            mlp: MlpBlock::load(&w.at("mlp"), dim, hidden, MlpActivation::Gelu)?,
            window,
        })
    }

    /// `[batch, height, width, dim] -> same`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, h, w, _] = x.dims();
        let shortcut = x.clone();

        // Attention, within windows for the windowed blocks.
        let x = self.norm1.forward(x);
        let x = if self.window > 0 {
            let (windows, padded) = window_partition(x, self.window);
            window_unpartition(self.attn.forward(windows), self.window, padded, [h, w])
        } else {
            self.attn.forward(x)
        };
        let x = shortcut + x;

        // MLP.
        x.clone() + self.mlp.forward(self.norm2.forward(x))
    }
}

/// `Attention`: multi-head self-attention with decomposed relative position biases.
#[derive(Module, Debug)]
struct Attention {
    qkv: Linear,
    proj: Linear,
    rel_pos_h: Param<Tensor<2>>,
    rel_pos_w: Param<Tensor<2>>,
    #[module(skip)]
    num_heads: usize,
}

impl Attention {
    /// `size` is the side of the square token grid the block attends over.
    fn load(w: &Weights, dim: usize, num_heads: usize, size: usize) -> Result<Self> {
        let head_dim = dim / num_heads;
        Ok(Self {
            qkv: w.linear("qkv", dim, 3 * dim, true)?,
            proj: w.linear("proj", dim, dim, true)?,
            rel_pos_h: w.param("rel_pos_h", [2 * size - 1, head_dim])?,
            rel_pos_w: w.param("rel_pos_w", [2 * size - 1, head_dim])?,
            num_heads,
        })
    }

    /// `[batch, height, width, dim] -> same`.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, dim] = x.dims();
        let heads = self.num_heads;
        let head_dim = dim / heads;
        let tokens = h * w;

        // Queries, keys and values: [3, batch * heads, tokens, head_dim].
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, tokens, 3, heads, head_dim])
            .permute([2, 0, 3, 1, 4])
            .reshape([3, b * heads, tokens, head_dim]);
        let q = qkv.clone().narrow(0, 0, 1).squeeze_dim::<3>(0);
        let k = qkv.clone().narrow(0, 1, 1).squeeze_dim::<3>(0);
        let v = qkv.narrow(0, 2, 1).squeeze_dim::<3>(0);

        // Scores with the relative position biases: [batch * heads, tokens, tokens].
        let scale = (head_dim as f64).powf(-0.5);
        let attn = q.clone().mul_scalar(scale).matmul(k.swap_dims(1, 2));
        let attn =
            add_decomposed_rel_pos(attn, q, self.rel_pos_h.val(), self.rel_pos_w.val(), [h, w]);
        let attn = softmax(attn, 2);

        // Weighted values back to [batch, height, width, dim].
        let x = attn
            .matmul(v)
            .reshape([b, heads, h, w, head_dim])
            .permute([0, 2, 3, 1, 4])
            .reshape([b, h, w, dim]);
        self.proj.forward(x)
    }
}

/// `get_rel_pos` for equal query and key sizes: the table row for each (query, key) offset,
/// `[size, size, head_dim]`.
fn get_rel_pos(size: usize, rel_pos: Tensor<2>) -> Tensor<3> {
    let [rows, head_dim] = rel_pos.dims();
    // NOTE: the reference resizes the table by linear interpolation when it does not have
    // `2 * size - 1` rows; our loader refuses such a checkpoint instead (a shape error), since
    // every published model matches its input size.
    debug_assert_eq!(rows, 2 * size - 1);
    let index: Vec<i64> = (0..size)
        .flat_map(|q| (0..size).map(move |k| (q + size - 1 - k) as i64))
        .collect();
    let index =
        Tensor::<1, Int>::from_data(TensorData::new(index, [size * size]), &rel_pos.device());
    rel_pos.select(0, index).reshape([size, size, head_dim])
}

/// `add_decomposed_rel_pos`: adds `q . R_h` and `q . R_w` to the scores of a square grid.
///
/// `attn` is `[batch, h * w, h * w]`, `q` (unscaled) `[batch, h * w, head_dim]`.
fn add_decomposed_rel_pos(
    attn: Tensor<3>,
    q: Tensor<3>,
    rel_pos_h: Tensor<2>,
    rel_pos_w: Tensor<2>,
    [h, w]: [usize; 2],
) -> Tensor<3> {
    let [b, _, head_dim] = q.dims();
    let r_h = get_rel_pos(h, rel_pos_h); // [h, k_h, head_dim]
    let r_w = get_rel_pos(w, rel_pos_w); // [w, k_w, head_dim]
    let r_q = q.reshape([b, h, w, head_dim]);

    // rel_h[b, y, x, k] = sum_c r_q[b, y, x, c] * r_h[y, k, c], batched over y.
    let rel_h = r_q
        .clone()
        .permute([1, 0, 2, 3])
        .reshape([h, b * w, head_dim])
        .matmul(r_h.swap_dims(1, 2))
        .reshape([h, b, w, h])
        .permute([1, 0, 2, 3]);

    // rel_w[b, y, x, k] = sum_c r_q[b, y, x, c] * r_w[x, k, c], batched over x.
    let rel_w = r_q
        .permute([2, 0, 1, 3])
        .reshape([w, b * h, head_dim])
        .matmul(r_w.swap_dims(1, 2))
        .reshape([w, b, h, w])
        .permute([1, 2, 0, 3]);

    // Broadcast over the key grid: [batch, h, w, k_h, k_w].
    let attn =
        attn.reshape([b, h, w, h, w]) + rel_h.unsqueeze_dim::<5>(4) + rel_w.unsqueeze_dim::<5>(3);
    attn.reshape([b, h * w, h * w])
}

/// `window_partition`: pads `[batch, h, w, c]` to a multiple of `window` and cuts it into
/// `[batch * windows, window, window, c]`; returns the padded size.
fn window_partition(x: Tensor<4>, window: usize) -> (Tensor<4>, [usize; 2]) {
    let [b, h, w, c] = x.dims();
    let pad_h = (window - h % window) % window;
    let pad_w = (window - w % window) % window;
    let x = if pad_h > 0 || pad_w > 0 {
        let device = x.device();
        let x = Tensor::cat(vec![x, Tensor::zeros([b, pad_h, w, c], &device)], 1);
        Tensor::cat(vec![x, Tensor::zeros([b, h + pad_h, pad_w, c], &device)], 2)
    } else {
        x
    };
    let (hp, wp) = (h + pad_h, w + pad_w);
    let windows = x
        .reshape([b, hp / window, window, wp / window, window, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (hp / window) * (wp / window), window, window, c]);
    (windows, [hp, wp])
}

/// `window_unpartition`: the inverse of [`window_partition`], cropping the padding.
fn window_unpartition(
    windows: Tensor<4>,
    window: usize,
    [hp, wp]: [usize; 2],
    [h, w]: [usize; 2],
) -> Tensor<4> {
    let [n, _, _, c] = windows.dims();
    let b = n / ((hp / window) * (wp / window));
    let x = windows
        .reshape([b, hp / window, wp / window, window, window, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, hp, wp, c]);
    if hp > h || wp > w {
        x.slice([0..b, 0..h, 0..w, 0..c])
    } else {
        x
    }
}
