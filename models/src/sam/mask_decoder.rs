//! SAM's mask decoder (`segment_anything/modeling/mask_decoder.py`): the two-way transformer
//! over prompt tokens and image embedding, then the upscaled embedding and one hypernetwork
//! per output mask.
//!
//! LiteMedSAM vendors the same module with one change: its `predict_masks` uses the image
//! embeddings as they are when their batch already equals the number of prompts instead of
//! repeating them. [`MaskDecoder::forward`] accepts both (batch 1 or `B`).

use burn::module::Param;
use burn::nn::conv::ConvTranspose2d;
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation;

use crate::error::Result;
use crate::sam::common::gelu;
use crate::sam::transformer::{TwoWayTransformer, contiguous, to_tokens};
use crate::weights::Weights;

/// The sizes of a mask decoder and of its two-way transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskDecoderConfig {
    /// Channels of the transformer, of the image embedding and of the prompt tokens.
    pub transformer_dim: usize,
    /// Masks predicted in multimask mode (a further one is the single-mask output).
    pub num_multimask_outputs: usize,
    /// Layers of the IoU prediction MLP.
    pub iou_head_depth: usize,
    /// Hidden width of the IoU prediction MLP.
    pub iou_head_hidden_dim: usize,
    /// Two-way blocks of the transformer.
    pub depth: usize,
    /// Hidden width of the transformer's MLP blocks.
    pub mlp_dim: usize,
    /// Attention heads of the transformer.
    pub num_heads: usize,
}

impl MaskDecoderConfig {
    /// The decoder of SAM ViT-B/L/H and of LiteMedSAM alike.
    pub fn sam() -> Self {
        Self {
            transformer_dim: 256,
            num_multimask_outputs: 3,
            iou_head_depth: 3,
            iou_head_hidden_dim: 256,
            depth: 2,
            mlp_dim: 2048,
            num_heads: 8,
        }
    }
}

/// `MLP` of the mask decoder: `num_layers` linear layers with ReLU between them.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Loads `layers.{0..num_layers}`: `input -> hidden -> ... -> hidden -> output`.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(
        w: &Weights,
        input_dim: usize,
        hidden_dim: usize,
        output_dim: usize,
        num_layers: usize,
    ) -> Result<Self> {
        let layers = (0..num_layers)
            .map(|i| {
                let d_in = if i == 0 { input_dim } else { hidden_dim };
                let d_out = if i + 1 == num_layers {
                    output_dim
                } else {
                    hidden_dim
                };
                w.at("layers").linear(&i.to_string(), d_in, d_out, true)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// `[..., input] -> [..., output]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let last = self.layers.len().saturating_sub(1);
        self.layers.iter().enumerate().fold(x, |x, (i, layer)| {
            let x = layer.forward(x);
            if i < last { activation::relu(x) } else { x }
        })
    }
}

/// `MaskDecoder`: predicts low-resolution mask logits and their IoU from an image embedding
/// and prompt embeddings.
#[derive(Module, Debug)]
pub struct MaskDecoder {
    transformer: TwoWayTransformer,
    /// `iou_token.weight`, `[1, C]`.
    iou_token: Param<Tensor<2>>,
    /// `mask_tokens.weight`, `[num_multimask_outputs + 1, C]`.
    mask_tokens: Param<Tensor<2>>,
    /// `output_upscaling.0`: `ConvTranspose2d(C, C / 4, 2, stride 2)`.
    output_upscaling_0: ConvTranspose2d,
    /// `output_upscaling.1`: `LayerNorm2d(C / 4)`, applied channels last as a layer norm
    /// (index 2 is the GELU).
    output_upscaling_1: LayerNorm,
    /// `output_upscaling.3`: `ConvTranspose2d(C / 4, C / 8, 2, stride 2)` (index 4 is the GELU).
    output_upscaling_3: ConvTranspose2d,
    /// `output_hypernetworks_mlps.{i}`: one `C -> C -> C / 8` MLP per mask token.
    output_hypernetworks_mlps: Vec<Mlp>,
    /// `iou_prediction_head`: `C -> hidden -> ... -> num_mask_tokens`.
    iou_prediction_head: Mlp,
}

impl MaskDecoder {
    /// Loads the decoder from `w` positioned at `mask_decoder`.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, config: &MaskDecoderConfig) -> Result<Self> {
        let c = config.transformer_dim;
        let num_mask_tokens = config.num_multimask_outputs + 1;
        let upscaling = w.at("output_upscaling");
        let output_hypernetworks_mlps = (0..num_mask_tokens)
            .map(|i| Mlp::load(&w.at("output_hypernetworks_mlps").at(i), c, c, c / 8, 3))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            transformer: TwoWayTransformer::load(
                &w.at("transformer"),
                config.depth,
                c,
                config.num_heads,
                config.mlp_dim,
            )?,
            iou_token: w.at("iou_token").param("weight", [1, c])?,
            mask_tokens: w.at("mask_tokens").param("weight", [num_mask_tokens, c])?,
            output_upscaling_0: upscaling.conv_transpose2d("0", c, c / 4, 2)?,
            output_upscaling_1: upscaling.layer_norm("1", c / 4, 1e-6)?,
            output_upscaling_3: upscaling.conv_transpose2d("3", c / 4, c / 8, 2)?,
            output_hypernetworks_mlps,
            iou_prediction_head: Mlp::load(
                &w.at("iou_prediction_head"),
                c,
                config.iou_head_hidden_dim,
                num_mask_tokens,
                config.iou_head_depth,
            )?,
        })
    }

    /// The number of mask tokens (`num_multimask_outputs + 1`).
    pub fn num_mask_tokens(&self) -> usize {
        self.output_hypernetworks_mlps.len()
    }

    /// `forward`: image embedding `[1, C, h, w]` (or `[B, C, h, w]`, one per prompt), its
    /// positional encoding `[1, C, h, w]`, sparse prompt embeddings `[B, n, C]` and dense ones
    /// `[B, C, h, w]` (or `[1, C, h, w]`, shared) -> (low-resolution mask logits
    /// `[B, c, 4h, 4w]`, predicted IoU `[B, c]`), with `c` = 3 when `multimask`, else 1.
    ///
    /// # Panics
    ///
    /// When the batch of the image embedding or of the dense embeddings is neither 1 nor `B`.
    pub fn forward(
        &self,
        image_embedding: Tensor<4>,
        image_pe: Tensor<4>,
        sparse: Tensor<3>,
        dense: Tensor<4>,
        multimask: bool,
    ) -> (Tensor<4>, Tensor<2>) {
        let [batch, _, channels] = sparse.dims();
        let num_mask_tokens = self.num_mask_tokens();

        // Output tokens then prompt tokens: [B, 1 + num_mask_tokens + n, C].
        let output_tokens = Tensor::cat(vec![self.iou_token.val(), self.mask_tokens.val()], 0);
        let output_tokens =
            output_tokens
                .unsqueeze_dim::<3>(0)
                .expand([batch, num_mask_tokens + 1, channels]);
        let tokens = Tensor::cat(vec![output_tokens, sparse], 1);

        // The image per prompt plus the dense embedding, as tokens: [B or 1, h * w, C].
        // NOTE: `repeat_interleave(image_embeddings, B) + dense` as a broadcast addition: an
        // image and a dense embedding of batch 1 stay shared (the transformer broadcasts
        // them), and so does the positional encoding `repeat_interleave(image_pe, B)`.
        let [image_batch, c, h, w] = image_embedding.dims();
        let dense_batch = dense.dims()[0];
        assert!(
            (image_batch == 1 || image_batch == batch)
                && (dense_batch == 1 || dense_batch == batch),
            "image embedding batch {image_batch} and dense batch {dense_batch} must be 1 or the \
             number of prompts {batch}"
        );
        // The sum runs channels last, [B, h, w, C], so that a dense embedding broadcast from
        // `no_mask_embed` is read as such, never copied out.
        let channels_last = |x: Tensor<4>| x.permute([0, 2, 3, 1]);
        let src = contiguous(channels_last(image_embedding)) + channels_last(dense);
        let src_batch = src.dims()[0];
        let src = src.reshape([src_batch, h * w, c]);
        let pos_src = contiguous(to_tokens(image_pe));

        // The two-way transformer: tokens [B, tokens, C], image [B, h * w, C].
        let (hs, src) = self.transformer.forward_tokens(src, pos_src, tokens);

        // The output tokens; only the masks asked for are computed.
        let selected = if multimask { 1..num_mask_tokens } else { 0..1 };
        let iou_token_out = hs.clone().slice([0..batch, 0..1, 0..c]).reshape([batch, c]);
        let mask_tokens_out = hs.slice([0..batch, 1 + selected.start..1 + selected.end, 0..c]);

        // Upscale the image, channels last: [B, h * w, C] -> [B, 4h * 4w, C / 8] with the
        // pixels in (y, x, i, j, i2, j2) order, output pixel (4y + 2i + i2, 4x + 2j + j2).
        // NOTE: the reference runs `output_upscaling` on [B, C, h, w]; a transposed
        // convolution with kernel and stride 2 is a per-pixel linear map to the 2 x 2 output
        // pixels, so it runs here as a matrix product on the transformer's [B, h * w, C]
        // output (no transpose of the image) and `LayerNorm2d` as a layer norm over the last
        // dimension. Same values up to the order of the sums.
        let upscaled = conv_transpose_2x2(&self.output_upscaling_0, src);
        let upscaled = gelu(self.output_upscaling_1.forward(upscaled));
        let upscaled = gelu(conv_transpose_2x2(&self.output_upscaling_3, upscaled));

        // One hypernetwork per mask token: [B, masks, C / 8].
        let hyper_in = selected
            .clone()
            .enumerate()
            .map(|(j, i)| {
                let token = mask_tokens_out.clone().slice([0..batch, j..j + 1, 0..c]);
                self.output_hypernetworks_mlps[i].forward(token)
            })
            .collect::<Vec<_>>();
        let hyper_in = Tensor::cat(hyper_in, 1);

        // Masks: [B, 16hw, C / 8] x [B, C / 8, masks] -> [B, 16hw, masks], then back to
        // rows and columns: [B, h, w, i, j, i2, j2, masks] -> [B, masks, 4h, 4w].
        let masks = upscaled.matmul(hyper_in.swap_dims(1, 2));
        let num_masks = selected.len();
        let masks = masks
            .reshape([batch, h, w, 2, 2, 2, 2, num_masks])
            .permute([0, 7, 1, 3, 5, 2, 4, 6])
            .reshape([batch, num_masks, 4 * h, 4 * w]);

        // Mask quality: [B, num_mask_tokens] -> [B, masks].
        let iou_pred = self.iou_prediction_head.forward(iou_token_out);
        let iou_pred = iou_pred.slice([0..batch, selected]);

        (masks, iou_pred)
    }
}

/// A `ConvTranspose2d` with kernel and stride 2 on channels-last pixels: `[B, P, C_in]` ->
/// `[B, 4P, C_out]`, each input pixel followed by its 2 x 2 output pixels in row order.
fn conv_transpose_2x2(conv: &ConvTranspose2d, x: Tensor<3>) -> Tensor<3> {
    let [batch, pixels, _] = x.dims();
    // Weight [C_in, C_out, 2, 2] -> [C_in, (i, j, C_out)]; the bias repeats per (i, j).
    let [c_in, c_out, kh, kw] = conv.weight.dims();
    let weight = conv
        .weight
        .val()
        .permute([0, 2, 3, 1])
        .reshape([c_in, kh * kw * c_out]);
    let bias = conv
        .bias
        .as_ref()
        .map(|bias| bias.val().repeat_dim(0, kh * kw));
    // [B, P, C_in] -> [B, P, (i, j, C_out)] -> [B, 4P, C_out].
    burn::tensor::module::linear(x, weight, bias).reshape([batch, pixels * kh * kw, c_out])
}
