//! The trained network as a checkpoint others can read: a safetensors file with the key names
//! of OMG-Net's PyTorch Lightning `state_dict` (`backbone.conv1.weight`,
//! `backbone.bn1.running_mean`, `backbone.layer1.0.conv1.weight`, ..., `backbone.fc.bias`,
//! `mask_encoder.weight`), in PyTorch's layouts, so that
//! [`crate::classifier::Classifier::load`] (and `safetensors.torch.load_file` followed by
//! OMG-Net's `load_state_dict`) read it as they are; and the way back, from any file with those
//! keys to a [`TrainableClassifier`] that can train on.
//!
//! NOTE: OMG-Net's Lightning module also holds `encoder_4d.weight` (the stem of its 4-channel
//! input, unused by the published configuration) and `loss_fcn.weight` (the class weights of its
//! loss). Neither is part of this network, so the export leaves them out: in Python, OMG-Net's
//! `load_state_dict` takes it with `strict=False`.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Param, RunningState};
use burn::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::{Deserialize, Serialize};

use super::network::{BasicBlock, BatchNorm2d, Downsample, TrainableClassifier, stem_maxpool};
use crate::classifier::{MODEL, NUM_CLASSES, STAGE_CHANNELS, STEM_CHANNELS};
use crate::error::{ModelError, Result};
use crate::weights::{Conv2dSpec, Weights};

/// The element type of the exported weights and running statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportDtype {
    /// 32-bit floats: the network exactly (45 MB).
    #[default]
    F32,
    /// 16-bit floats (half the size), as `model.half()` would save; see the export test for
    /// what it costs in logits.
    F16,
}

/// One tensor of the export.
enum Values {
    Float(Vec<f32>),
    /// `num_batches_tracked`: a 0-dimensional int64 in PyTorch.
    Count(i64),
}

/// A tensor under its checkpoint key, in PyTorch's layout.
struct Named {
    key: String,
    shape: Vec<usize>,
    values: Values,
}

/// The values of a float tensor.
fn floats<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|err| ModelError::Readback(format!("{err:?}")))
}

impl TrainableClassifier {
    /// The network's tensors under OMG-Net's checkpoint keys, in checkpoint order.
    fn state_dict(&self) -> Result<Vec<Named>> {
        // `valid` folds the latest running-statistics updates in and leaves autodiff.
        let net = self.valid();
        let mut entries = Vec::new();
        let conv =
            |entries: &mut Vec<Named>, key: &str, c: &burn::nn::conv::Conv2d| -> Result<()> {
                let weight = c.weight.val();
                entries.push(Named {
                    key: format!("{key}.weight"),
                    shape: weight.dims().to_vec(),
                    values: Values::Float(floats(weight)?),
                });
                if let Some(bias) = &c.bias {
                    let bias = bias.val();
                    entries.push(Named {
                        key: format!("{key}.bias"),
                        shape: bias.dims().to_vec(),
                        values: Values::Float(floats(bias)?),
                    });
                }
                Ok(())
            };
        let norm = |entries: &mut Vec<Named>, key: &str, bn: &BatchNorm2d| -> Result<()> {
            for (name, tensor) in [
                ("weight", bn.weight.val()),
                ("bias", bn.bias.val()),
                ("running_mean", bn.running_mean.value()),
                ("running_var", bn.running_var.value()),
            ] {
                entries.push(Named {
                    key: format!("{key}.{name}"),
                    shape: tensor.dims().to_vec(),
                    values: Values::Float(floats(tensor)?),
                });
            }
            let count = floats(bn.num_batches_tracked.value())?;
            entries.push(Named {
                key: format!("{key}.num_batches_tracked"),
                shape: Vec::new(),
                values: Values::Count(count.first().copied().unwrap_or(0.0) as i64),
            });
            Ok(())
        };

        conv(&mut entries, "backbone.conv1", &net.conv1)?;
        norm(&mut entries, "backbone.bn1", &net.bn1)?;
        for (key, block) in net.blocks() {
            conv(&mut entries, &format!("{key}.conv1"), &block.conv1)?;
            norm(&mut entries, &format!("{key}.bn1"), &block.bn1)?;
            conv(&mut entries, &format!("{key}.conv2"), &block.conv2)?;
            norm(&mut entries, &format!("{key}.bn2"), &block.bn2)?;
            if let Some(d) = &block.downsample {
                conv(&mut entries, &format!("{key}.downsample.0"), &d.conv)?;
                norm(&mut entries, &format!("{key}.downsample.1"), &d.bn)?;
            }
        }
        // PyTorch's Linear stores [out, in]; burn's [in, out].
        let fc_weight = net.fc.weight.val().transpose();
        entries.push(Named {
            key: "backbone.fc.weight".into(),
            shape: fc_weight.dims().to_vec(),
            values: Values::Float(floats(fc_weight)?),
        });
        if let Some(bias) = &net.fc.bias {
            let bias = bias.val();
            entries.push(Named {
                key: "backbone.fc.bias".into(),
                shape: bias.dims().to_vec(),
                values: Values::Float(floats(bias)?),
            });
        }
        conv(&mut entries, "mask_encoder", &net.mask_encoder)?;
        Ok(entries)
    }

    /// The checkpoint keys of the export, in order: what [`TrainableClassifier::export`]
    /// writes.
    ///
    /// # Errors
    ///
    /// [`ModelError::Readback`] if the device's tensors cannot be read.
    pub fn checkpoint_keys(&self) -> Result<Vec<String>> {
        Ok(self.state_dict()?.into_iter().map(|n| n.key).collect())
    }

    /// Writes the network to `path` as a safetensors file with OMG-Net's Lightning key names
    /// (see the module documentation), its floats in `dtype` and `num_batches_tracked` as
    /// int64 scalars. The running statistics are those of the latest training step.
    ///
    /// # Errors
    ///
    /// [`ModelError::Io`] when the file cannot be written; [`ModelError::Readback`] if the
    /// device's tensors cannot be read.
    pub fn export(&self, path: &Path, dtype: ExportDtype) -> Result<()> {
        let entries = self.state_dict()?;
        let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = entries
            .into_iter()
            .map(|n| {
                let (dtype, bytes) = match (n.values, dtype) {
                    (Values::Float(v), ExportDtype::F32) => {
                        (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
                    }
                    (Values::Float(v), ExportDtype::F16) => (
                        Dtype::F16,
                        v.iter()
                            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                            .collect(),
                    ),
                    (Values::Count(c), _) => (Dtype::I64, c.to_le_bytes().to_vec()),
                };
                (n.key, dtype, n.shape, bytes)
            })
            .collect();
        let views = encoded
            .iter()
            .map(|(key, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|view| (key.as_str(), view))
            })
            .collect::<std::result::Result<Vec<_>, _>>();
        // One entry only: safetensors writes the metadata map in hash order, and a single
        // entry keeps the file's bytes the same for the same network.
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        let io = |err: safetensors::SafeTensorError| ModelError::Io {
            context: format!("cannot write the classifier to {}", path.display()),
            source: std::io::Error::other(err.to_string()),
        };
        safetensors::serialize_to_file(views.map_err(io)?, Some(metadata), path).map_err(io)?;
        tracing::info!(?dtype, "classifier exported");
        Ok(())
    }

    /// Loads a network to train on from a classifier file with OMG-Net's key names: a
    /// safetensors export or a Lightning checkpoint (see [`Weights::from_file`]).
    ///
    /// # Errors
    ///
    /// As [`Weights::from_file`] and [`TrainableClassifier::from_weights`].
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::from_weights(&Weights::from_file(path, MODEL, device)?)
    }

    /// Builds the network from `weights` with OMG-Net's key names (`backbone.*`,
    /// `mask_encoder.*`), running statistics included.
    ///
    /// NOTE: `num_batches_tracked` starts again at 0: it is an integer the float reader does
    /// not read, and with a momentum of 0.1 nothing depends on it.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingKey`], [`ModelError::WrongShape`] or another error of
    /// [`Weights::tensor`], naming the first bad key.
    pub fn from_weights(w: &Weights) -> Result<Self> {
        let device = w.device().clone();
        let backbone = w.at("backbone");
        let norm = |w: &Weights, name: &str, d: usize| -> Result<BatchNorm2d> {
            let at = w.at(name);
            let mut bn = BatchNorm2d::new(d, &device);
            bn.weight = Param::from_tensor(at.tensor("weight", [d])?);
            bn.bias = Param::from_tensor(at.tensor("bias", [d])?);
            bn.running_mean = RunningState::new(at.tensor("running_mean", [d])?);
            bn.running_var = RunningState::new(at.tensor("running_var", [d])?);
            Ok(bn)
        };
        let block = |w: &Weights, c_in: usize, c_out: usize, stride: usize| -> Result<BasicBlock> {
            let conv3x3 = |c_in| Conv2dSpec::new(c_in, c_out, 3).padding(1).no_bias();
            let downsample = if stride != 1 || c_in != c_out {
                let d = w.at("downsample");
                let spec = Conv2dSpec::new(c_in, c_out, 1).stride(stride).no_bias();
                Some(Downsample {
                    conv: d.conv2d("0", spec)?,
                    bn: norm(&d, "1", c_out)?,
                })
            } else {
                None
            };
            Ok(BasicBlock {
                conv1: w.conv2d("conv1", conv3x3(c_in).stride(stride))?,
                bn1: norm(w, "bn1", c_out)?,
                conv2: w.conv2d("conv2", conv3x3(c_out))?,
                bn2: norm(w, "bn2", c_out)?,
                downsample,
            })
        };
        let stage = |name: &str, c_in: usize, c_out: usize, stride: usize| -> Result<Vec<_>> {
            let at = backbone.at(name);
            (0..crate::classifier::BLOCKS_PER_STAGE)
                .map(|i| {
                    let (c_in, stride) = if i == 0 { (c_in, stride) } else { (c_out, 1) };
                    block(&at.at(i), c_in, c_out, stride)
                })
                .collect()
        };

        let stem = Conv2dSpec::new(3, STEM_CHANNELS, 7).stride(2).padding(3);
        let [c1, c2, c3, c4] = STAGE_CHANNELS;
        Ok(Self {
            conv1: backbone.conv2d("conv1", stem.no_bias())?,
            mask_encoder: w.conv2d(
                "mask_encoder",
                Conv2dSpec::new(1, STEM_CHANNELS, 7).stride(2).padding(3),
            )?,
            bn1: norm(&backbone, "bn1", STEM_CHANNELS)?,
            maxpool: stem_maxpool(),
            layer1: stage("layer1", STEM_CHANNELS, c1, 1)?,
            layer2: stage("layer2", c1, c2, 2)?,
            layer3: stage("layer3", c2, c3, 2)?,
            layer4: stage("layer4", c3, c4, 2)?,
            fc: backbone.linear("fc", c4, NUM_CLASSES, true)?,
        })
    }
}
