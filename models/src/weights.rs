//! Reading network weights: published PyTorch checkpoints, read one tensor at a time,
//! safetensors files (what [`crate::train`] exports), or seeded random values for tests and
//! benchmarks.
//!
//! Every network in this crate is built by a `load` function that asks a [`Weights`] for each
//! tensor under the same dotted name the PyTorch `state_dict` uses, so the Rust module tree
//! mirrors the checkpoint. A checkpoint is opened lazily: its pickle is parsed at open and each
//! tensor's bytes are read only when the network asks for it, converted to `f32` and handed to
//! the device, so loading the 2.5 GB ViT-H never holds two copies of the weights.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, LayerNorm, LayerNormConfig, Linear, PaddingConfig2d};
use burn::prelude::*;
use pytorch_reader::{DType, PytorchReader};

use crate::error::{ModelError, Result};

/// Where the tensors come from.
enum Source {
    Checkpoint(Checkpoint),
    Safetensors(SafetensorsFile),
    Random { seed: u64 },
}

/// An opened safetensors file, held in memory (a classifier is 45 MB in `f32`).
struct SafetensorsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Where the tensor data begins in `bytes`: after the length and the JSON header.
    data_start: usize,
    tensors: HashMap<String, safetensors::tensor::TensorInfo>,
    /// Keys the network asked for, to report what the file holds that nothing used.
    used: Mutex<HashSet<String>>,
}

/// An opened PyTorch checkpoint.
struct Checkpoint {
    path: PathBuf,
    tensors: HashMap<String, pytorch_reader::Tensor>,
    /// Keys the network asked for, to report what the file holds that nothing used.
    used: Mutex<HashSet<String>>,
    /// A checkpoint unpacked from the binary lives in a temporary file for as long as it is
    /// read.
    _temp: Option<tempfile::NamedTempFile>,
}

/// A view of a set of weights under a key prefix, on a device.
///
/// Cheap to clone; [`Weights::at`] descends one level of the `state_dict` naming.
#[derive(Clone)]
pub struct Weights {
    source: Arc<Source>,
    prefix: String,
    model: Arc<str>,
    device: Device,
    /// Every tensor read, when recording ([`Weights::recording`]).
    recorder: Option<Arc<Mutex<Vec<Recorded>>>>,
}

/// A tensor as a network read it: its full key, shape and values.
pub(crate) type Recorded = (String, Vec<usize>, Vec<f32>);

/// Prefixes under which training frameworks nest a model's `state_dict`: the weights are
/// looked up under them when the plain key is absent.
const WRAPPER_PREFIXES: [&str; 2] = ["model.", "state_dict."];

impl Weights {
    /// Opens a PyTorch checkpoint (`.pth`, `.pt`) for the network named `model`.
    ///
    /// # Errors
    ///
    /// [`ModelError::Unreadable`] when the file is missing, truncated or not a PyTorch
    /// checkpoint.
    pub fn from_checkpoint(path: &Path, model: &str, device: &Device) -> Result<Self> {
        Self::open(path.to_path_buf(), None, model, device)
    }

    /// Opens checkpoint bytes held in memory (the embedded default weights), under the name
    /// `name` for messages.
    ///
    /// # Errors
    ///
    /// [`ModelError::Io`] when no temporary file can be written, otherwise as
    /// [`Weights::from_checkpoint`].
    pub fn from_bytes(bytes: &[u8], name: &str, model: &str, device: &Device) -> Result<Self> {
        use std::io::Write;

        // NOTE: the checkpoint reader reads tensors from a file, never from memory, so the
        // embedded bytes go through a private temporary file, removed when the weights drop.
        let io = |context: &str| {
            let context = context.to_string();
            move |source| ModelError::Io { context, source }
        };
        let mut temp = tempfile::Builder::new()
            .prefix("mitoscope-weights-")
            .suffix(".pth")
            .tempfile()
            .map_err(io(
                "cannot create a temporary file for the embedded weights",
            ))?;
        temp.write_all(bytes)
            .and_then(|()| temp.flush())
            .map_err(io("cannot write the embedded weights to a temporary file"))?;
        let path = temp.path().to_path_buf();
        let mut weights = Self::open(path, Some(temp), model, device)?;
        if let Some(Source::Checkpoint(checkpoint)) = Arc::get_mut(&mut weights.source) {
            checkpoint.path = PathBuf::from(name);
        }
        Ok(weights)
    }

    fn open(
        path: PathBuf,
        temp: Option<tempfile::NamedTempFile>,
        model: &str,
        device: &Device,
    ) -> Result<Self> {
        let reader = PytorchReader::new(&path).map_err(|err| ModelError::Unreadable {
            path: path.clone(),
            reason: err.to_string(),
        })?;
        if reader.is_empty() {
            return Err(ModelError::Unreadable {
                path,
                reason: "the file holds no tensors".into(),
            });
        }
        tracing::debug!(tensors = reader.len(), "checkpoint opened");
        let checkpoint = Checkpoint {
            path,
            tensors: reader.into_tensors(),
            used: Mutex::new(HashSet::new()),
            _temp: temp,
        };
        Ok(Self {
            source: Arc::new(Source::Checkpoint(checkpoint)),
            prefix: String::new(),
            model: model.into(),
            device: device.clone(),
            recorder: None,
        })
    }

    /// Opens a safetensors file (the format of the Hugging Face hub, and of the classifiers
    /// [`crate::train`] exports) for the network named `model`. Tensors in `f32`, `f16`,
    /// `bf16` and `f64` are read as `f32`.
    ///
    /// # Errors
    ///
    /// [`ModelError::Unreadable`] when the file is missing, is not a valid safetensors file, or
    /// holds no tensors.
    pub fn from_safetensors(path: &Path, model: &str, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|err| ModelError::Unreadable {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
        Self::from_safetensors_bytes(bytes, path, model, device)
    }

    /// Reads safetensors `bytes` already in memory (an embedded file, a download in the
    /// browser) as [`Weights::from_safetensors`]; `path` names them in errors.
    ///
    /// # Errors
    ///
    /// As [`Weights::from_safetensors`].
    pub fn from_safetensors_bytes(
        bytes: Vec<u8>,
        path: &Path,
        model: &str,
        device: &Device,
    ) -> Result<Self> {
        let unreadable = |reason: String| ModelError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        // `deserialize` checks the header against the data (offsets, sizes, overlaps).
        safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|err| unreadable(format!("not a valid safetensors file: {err}")))?;
        let (header, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|err| unreadable(format!("not a valid safetensors file: {err}")))?;
        let tensors: HashMap<String, safetensors::tensor::TensorInfo> = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        if tensors.is_empty() {
            return Err(unreadable("the file holds no tensors".into()));
        }
        tracing::debug!(tensors = tensors.len(), "safetensors file opened");
        let file = SafetensorsFile {
            path: path.to_path_buf(),
            bytes,
            data_start: 8 + header,
            tensors,
            used: Mutex::new(HashSet::new()),
        };
        Ok(Self {
            source: Arc::new(Source::Safetensors(file)),
            prefix: String::new(),
            model: model.into(),
            device: device.clone(),
            recorder: None,
        })
    }

    /// Opens `path` as a safetensors file when [`is_safetensors`] says it is one, otherwise as
    /// a PyTorch checkpoint.
    ///
    /// # Errors
    ///
    /// As [`Weights::from_safetensors`] or [`Weights::from_checkpoint`].
    pub fn from_file(path: &Path, model: &str, device: &Device) -> Result<Self> {
        if is_safetensors(path) {
            Self::from_safetensors(path, model, device)
        } else {
            Self::from_checkpoint(path, model, device)
        }
    }

    /// Seeded random weights for the network named `model`: the same seed gives the same
    /// values for the same key, whatever order they are asked in.
    pub fn random(seed: u64, model: &str, device: &Device) -> Self {
        Self {
            source: Arc::new(Source::Random { seed }),
            prefix: String::new(),
            model: model.into(),
            device: device.clone(),
            recorder: None,
        }
    }

    /// These weights, keeping from now on a copy of every tensor read through them or their
    /// views ([`Weights::at`]), to write out exactly what a network used.
    pub(crate) fn recording(self) -> (Self, Arc<Mutex<Vec<Recorded>>>) {
        let recorder = Arc::new(Mutex::new(Vec::new()));
        let weights = Self {
            recorder: Some(recorder.clone()),
            ..self
        };
        (weights, recorder)
    }

    /// The weights under `name` (`blocks`, then `3`, gives `blocks.3.`).
    pub fn at(&self, name: impl Display) -> Self {
        Self {
            prefix: format!("{}{name}.", self.prefix),
            ..self.clone()
        }
    }

    /// The device the tensors are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The full key of `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether the checkpoint holds a tensor under `name` (always true for random weights).
    pub fn contains(&self, name: &str) -> bool {
        match self.source.as_ref() {
            Source::Checkpoint(checkpoint) => checkpoint.find(&self.key(name)).is_some(),
            Source::Safetensors(file) => file.find(&self.key(name)).is_some(),
            Source::Random { .. } => true,
        }
    }

    /// The shape of the tensor under `name`, if the checkpoint holds it (`None` for random
    /// weights, which have whatever shape is asked).
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        match self.source.as_ref() {
            Source::Checkpoint(checkpoint) => {
                checkpoint.find(&self.key(name)).map(|t| t.shape().to_vec())
            }
            Source::Safetensors(file) => file.find(&self.key(name)).map(|(_, t)| t.shape.clone()),
            Source::Random { .. } => None,
        }
    }

    /// The file the weights come from, or `random` for random weights.
    pub fn path(&self) -> PathBuf {
        match self.source.as_ref() {
            Source::Checkpoint(checkpoint) => checkpoint.path.clone(),
            Source::Safetensors(file) => file.path.clone(),
            Source::Random { seed } => PathBuf::from(format!("random weights (seed {seed})")),
        }
    }

    /// The error for a missing key `name`.
    pub fn missing(&self, name: &str) -> ModelError {
        ModelError::MissingKey {
            path: self.path(),
            model: self.model.to_string(),
            key: self.key(name),
        }
    }

    /// The error for a key `name` of an unexpected shape.
    pub fn wrong_shape(&self, name: &str, expected: Vec<usize>, found: Vec<usize>) -> ModelError {
        ModelError::WrongShape {
            path: self.path(),
            model: self.model.to_string(),
            key: self.key(name),
            expected,
            found,
        }
    }

    /// The tensor under `name`, which must have the given shape.
    ///
    /// # Errors
    ///
    /// [`ModelError::MissingKey`], [`ModelError::WrongShape`], [`ModelError::WrongDtype`] or
    /// [`ModelError::UnreadableTensor`], each naming the file and the full key.
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let key = self.key(name);
        let values = match self.source.as_ref() {
            Source::Checkpoint(checkpoint) => checkpoint.read(&key, &shape, &self.model)?,
            Source::Safetensors(file) => file.read(&key, &shape, &self.model)?,
            Source::Random { seed } => random_values(*seed, &key, &shape),
        };
        if let Some(recorder) = &self.recorder {
            recorder
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .push((key, shape.to_vec(), values.clone()));
        }
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }

    /// The tensor under `name` as a parameter.
    ///
    /// # Errors
    ///
    /// As [`Weights::tensor`].
    pub fn param<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Param<Tensor<D>>> {
        self.tensor(name, shape).map(Param::from_tensor)
    }

    /// A `torch.nn.Linear` under `name` (`weight` `[d_out, d_in]`, optional `bias`).
    ///
    /// # Errors
    ///
    /// As [`Weights::tensor`].
    pub fn linear(&self, name: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        let at = self.at(name);
        // PyTorch stores `[d_out, d_in]` and computes `x W^T`; burn stores `[d_in, d_out]`.
        let weight = at.tensor("weight", [d_out, d_in])?.transpose();
        let bias = if bias {
            Some(at.param("bias", [d_out])?)
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    /// A `torch.nn.Conv2d` under `name`.
    ///
    /// # Errors
    ///
    /// As [`Weights::tensor`].
    pub fn conv2d(&self, name: &str, spec: Conv2dSpec) -> Result<Conv2d> {
        let at = self.at(name);
        let [c_in, c_out] = spec.channels;
        let weight = at.param(
            "weight",
            [c_out, c_in / spec.groups, spec.kernel, spec.kernel],
        )?;
        let bias = if spec.bias {
            Some(at.param("bias", [c_out])?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            stride: [spec.stride; 2],
            kernel_size: [spec.kernel; 2],
            dilation: [1, 1],
            groups: spec.groups,
            padding: PaddingConfig2d::Explicit(
                spec.padding,
                spec.padding,
                spec.padding,
                spec.padding,
            ),
        })
    }

    /// A `torch.nn.ConvTranspose2d` under `name` with kernel and stride `k`, no padding.
    ///
    /// # Errors
    ///
    /// As [`Weights::tensor`].
    pub fn conv_transpose2d(
        &self,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
    ) -> Result<ConvTranspose2d> {
        let at = self.at(name);
        let mut conv = ConvTranspose2dConfig::new([c_in, c_out], [k, k])
            .with_stride([k, k])
            .init(&self.device);
        conv.weight = at.param("weight", [c_in, c_out, k, k])?;
        conv.bias = Some(at.param("bias", [c_out])?);
        Ok(conv)
    }

    /// A `torch.nn.LayerNorm` under `name` over the last dimension of size `d`.
    ///
    /// # Errors
    ///
    /// As [`Weights::tensor`].
    pub fn layer_norm(&self, name: &str, d: usize, epsilon: f64) -> Result<LayerNorm> {
        let at = self.at(name);
        let mut norm = LayerNormConfig::new(d)
            .with_epsilon(epsilon)
            .init(&self.device);
        norm.gamma = at.param("weight", [d])?;
        norm.beta = Some(at.param("bias", [d])?);
        Ok(norm)
    }

    /// A `torch.nn.BatchNorm2d` under `name`, in evaluation mode (running statistics).
    ///
    /// # Errors
    ///
    /// As [`Weights::tensor`].
    pub fn batch_norm(&self, name: &str, d: usize, epsilon: f64) -> Result<BatchNorm> {
        let at = self.at(name);
        let mut norm = BatchNormConfig::new(d)
            .with_epsilon(epsilon)
            .init(&self.device);
        norm.gamma = at.param("weight", [d])?;
        norm.beta = at.param("bias", [d])?;
        norm.running_mean = burn::module::RunningState::new(at.tensor("running_mean", [d])?);
        norm.running_var = burn::module::RunningState::new(at.tensor("running_var", [d])?);
        Ok(norm)
    }

    /// The batch norm `name` in evaluation mode as a per-channel affine map, `y * scale + shift`
    /// with `scale = gamma / sqrt(var + epsilon)` and `shift = beta - mean * scale`: what is
    /// folded into the convolution before it.
    ///
    /// # Errors
    ///
    /// A missing or mis-shaped key.
    pub fn batch_norm_affine(
        &self,
        name: &str,
        d: usize,
        epsilon: f64,
    ) -> Result<(Tensor<1>, Tensor<1>)> {
        let at = self.at(name);
        let gamma = at.tensor("weight", [d])?;
        let beta = at.tensor("bias", [d])?;
        let mean = at.tensor("running_mean", [d])?;
        let var = at.tensor("running_var", [d])?;
        let scale = gamma / var.add_scalar(epsilon).sqrt();
        let shift = beta - mean * scale.clone();
        Ok((scale, shift))
    }

    /// Keys of the checkpoint that no network asked for, sorted (empty for random weights).
    pub fn unused_keys(&self) -> Vec<String> {
        let (keys, used): (Vec<&String>, _) = match self.source.as_ref() {
            Source::Checkpoint(checkpoint) => {
                (checkpoint.tensors.keys().collect(), &checkpoint.used)
            }
            Source::Safetensors(file) => (file.tensors.keys().collect(), &file.used),
            Source::Random { .. } => return Vec::new(),
        };
        let used = used.lock().unwrap_or_else(|poison| poison.into_inner());
        let mut unused: Vec<String> = keys
            .into_iter()
            .filter(|key| !used.contains(*key))
            .cloned()
            .collect();
        unused.sort();
        unused
    }
}

/// The geometry of a `torch.nn.Conv2d` with square kernel, stride and padding.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dSpec {
    /// `[in, out]` channels.
    pub channels: [usize; 2],
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Channel groups (`in` for a depthwise convolution).
    pub groups: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Conv2dSpec {
    /// A convolution with stride 1, no padding, one group and a bias.
    pub fn new(c_in: usize, c_out: usize, kernel: usize) -> Self {
        Self {
            channels: [c_in, c_out],
            kernel,
            stride: 1,
            padding: 0,
            groups: 1,
            bias: true,
        }
    }

    /// With this stride.
    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    /// With this padding.
    pub fn padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    /// With this many groups.
    pub fn groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }

    /// Without a bias.
    pub fn no_bias(self) -> Self {
        Self {
            bias: false,
            ..self
        }
    }
}

impl Checkpoint {
    /// The stored key for `key`, looking through the wrappers training frameworks add.
    fn find(&self, key: &str) -> Option<&pytorch_reader::Tensor> {
        self.tensors.get(key).or_else(|| {
            WRAPPER_PREFIXES
                .iter()
                .find_map(|prefix| self.tensors.get(&format!("{prefix}{key}")))
        })
    }

    fn read(&self, key: &str, shape: &[usize], model: &str) -> Result<Vec<f32>> {
        let Some(tensor) = self.find(key) else {
            return Err(ModelError::MissingKey {
                path: self.path.clone(),
                model: model.into(),
                key: key.into(),
            });
        };
        if tensor.shape() != shape {
            return Err(ModelError::WrongShape {
                path: self.path.clone(),
                model: model.into(),
                key: key.into(),
                expected: shape.to_vec(),
                found: tensor.shape().to_vec(),
            });
        }
        let bytes = tensor.read().map_err(|err| ModelError::UnreadableTensor {
            path: self.path.clone(),
            key: key.into(),
            reason: err.to_string(),
        })?;
        let kind = match tensor.dtype() {
            DType::F32 => Float::F32,
            DType::F16 => Float::F16,
            DType::BF16 => Float::BF16,
            DType::F64 => Float::F64,
            other => {
                return Err(ModelError::WrongDtype {
                    path: self.path.clone(),
                    key: key.into(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let values = floats_to_f32(&bytes, kind);
        self.used
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(tensor.name.clone());
        Ok(values)
    }
}

/// Whether `path` looks like a safetensors file: its name ends in `.safetensors`, or its first
/// bytes are a little-endian header length that fits the file followed by the header's `{`. A
/// PyTorch checkpoint (a zip archive or a pickle) never starts that way.
pub fn is_safetensors(path: &Path) -> bool {
    use std::io::Read;

    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    {
        return true;
    }
    let mut start = [0u8; 9];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    if file.read_exact(&mut start).is_err() {
        return false;
    }
    let mut header = [0u8; 8];
    header.copy_from_slice(&start[..8]);
    let header = u64::from_le_bytes(header);
    start[8] == b'{' && header >= 2 && header <= len - 8
}

impl SafetensorsFile {
    /// The stored key and tensor for `key`, looking through the wrappers training frameworks
    /// add.
    fn find(&self, key: &str) -> Option<(&String, &safetensors::tensor::TensorInfo)> {
        self.tensors.get_key_value(key).or_else(|| {
            WRAPPER_PREFIXES
                .iter()
                .find_map(|prefix| self.tensors.get_key_value(&format!("{prefix}{key}")))
        })
    }

    fn read(&self, key: &str, shape: &[usize], model: &str) -> Result<Vec<f32>> {
        use safetensors::Dtype;

        let Some((name, info)) = self.find(key) else {
            return Err(ModelError::MissingKey {
                path: self.path.clone(),
                model: model.into(),
                key: key.into(),
            });
        };
        if info.shape != shape {
            return Err(ModelError::WrongShape {
                path: self.path.clone(),
                model: model.into(),
                key: key.into(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        // The offsets were checked against the file when it was opened.
        let (begin, end) = info.data_offsets;
        let bytes = &self.bytes[self.data_start + begin..self.data_start + end];
        let kind = match info.dtype {
            Dtype::F32 => Float::F32,
            Dtype::F16 => Float::F16,
            Dtype::BF16 => Float::BF16,
            Dtype::F64 => Float::F64,
            other => {
                return Err(ModelError::WrongDtype {
                    path: self.path.clone(),
                    key: key.into(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let values = floats_to_f32(bytes, kind);
        self.used
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(name.clone());
        Ok(values)
    }
}

/// Uniform values in `±1/sqrt(fan_in)`, like PyTorch's default initialisation; running
/// variances stay positive. Seeded by the key so that the order of requests does not matter.
fn random_values(seed: u64, key: &str, shape: &[usize]) -> Vec<f32> {
    let count: usize = shape.iter().product();
    let fan_in: usize = if shape.len() > 1 {
        shape[1..].iter().product()
    } else {
        count
    };
    let scale = 1.0 / (fan_in.max(1) as f32).sqrt();
    let mut state = key
        .bytes()
        .fold(seed ^ 0x9E37_79B9_7F4A_7C15, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
        });
    let positive = key.ends_with("running_var");
    (0..count)
        .map(|_| {
            let unit = (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32;
            if positive {
                0.5 + unit
            } else {
                (2.0 * unit - 1.0) * scale
            }
        })
        .collect()
}

/// One step of the SplitMix64 generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A floating-point type as a checkpoint stores it.
#[derive(Debug, Clone, Copy)]
enum Float {
    F32,
    F16,
    BF16,
    F64,
}

/// Little-endian values of `kind` as `f32` (PyTorch and safetensors files are both
/// little-endian); a trailing partial value is dropped.
fn floats_to_f32(bytes: &[u8], kind: Float) -> Vec<f32> {
    match kind {
        Float::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Float::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Float::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Float::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
    }
}
