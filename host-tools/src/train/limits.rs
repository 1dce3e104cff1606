//! Bounds on what a training request may ask for, checked before anything is allocated.
//!
//! A tinyvae model runs on a microcontroller: its weights sit in flash (one byte each in int8)
//! and its activations in RAM. The limits below are far above any model that fits such a chip,
//! and low enough that no option, however large, makes the host tool abort on an allocation,
//! overflow an integer or run for ever:
//!
//! | option | range | why |
//! |---|---|---|
//! | `--window` | 1 to [`MAX_WINDOW`] samples | the chip holds a window in RAM |
//! | `--hidden`, `--decoder-hidden` | widths 1 to [`MAX_WIDTH`] | |
//! | `--latent` | 1 to [`MAX_LATENT`] | |
//! | parameters (all layers) | at most [`MAX_PARAMS`] | 1 MB of int8 weights: the flash of a large MCU |
//! | `--epochs` | 1 to [`MAX_EPOCHS`] | |
//! | `--kl-warmup`, `--patience` | 0 to [`MAX_EPOCHS`] | |
//! | `--batch` | 1 to [`MAX_BATCH`] | activations are `batch` × the layer widths |
//! | `--stride`, `--train-stride` | 1 to [`MAX_STRIDE`] samples | |
//!
//! Errors name the option, the value and the valid range. Nothing is sized from an option before
//! these checks; the epoch history grows with the epochs actually run.

use super::arch::Arch;
use super::trainer::TrainConfig;

/// Longest window, in samples.
pub const MAX_WINDOW: usize = 1024;
/// Widest hidden layer.
pub const MAX_WIDTH: usize = 1024;
/// Largest latent size.
pub const MAX_LATENT: usize = 256;
/// Most trained parameters of a model (weights, biases and decoder log-variances).
pub const MAX_PARAMS: usize = 1_000_000;
/// Most epochs (also the bound of `kl_warmup` and `patience`).
pub const MAX_EPOCHS: usize = 100_000;
/// Largest minibatch.
pub const MAX_BATCH: usize = 4096;
/// Largest stride between window starts, in samples.
pub const MAX_STRIDE: usize = 1_000_000;

fn in_range(option: &str, value: usize, lo: usize, hi: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        (lo..=hi).contains(&value),
        "{option} {value} is out of range: valid values are {lo} to {hi}"
    );
    Ok(())
}

/// Checks the sizes of a training request (flags or the `--config` file's values) before any
/// data is read.
///
/// # Errors
/// The first value out of its range, with the option and the range.
pub fn check_request(
    window: usize,
    strides: [usize; 2],
    encoder_hidden: &[usize],
    decoder_hidden: Option<&[usize]>,
    latent: Option<usize>,
    cfg: &TrainConfig,
) -> anyhow::Result<()> {
    in_range("--window", window, 1, MAX_WINDOW)?;
    in_range("--stride", strides[0], 1, MAX_STRIDE)?;
    in_range("--train-stride", strides[1], 1, MAX_STRIDE)?;
    check_widths("--hidden", encoder_hidden)?;
    if let Some(d) = decoder_hidden {
        check_widths("--decoder-hidden", d)?;
    }
    if let Some(z) = latent {
        in_range("--latent", z, 1, MAX_LATENT)?;
    }
    in_range("--epochs", cfg.epochs, 1, MAX_EPOCHS)?;
    in_range("--batch", cfg.batch, 1, MAX_BATCH)?;
    in_range("--kl-warmup", cfg.kl_warmup, 0, MAX_EPOCHS)?;
    in_range("--patience", cfg.patience, 0, MAX_EPOCHS)?;
    Ok(())
}

fn check_widths(option: &str, widths: &[usize]) -> anyhow::Result<()> {
    for &w in widths {
        in_range(option, w, 1, MAX_WIDTH)?;
    }
    Ok(())
}

/// Trained parameters of `arch` (saturating, so an absurd shape cannot overflow).
pub fn param_count(arch: &Arch) -> usize {
    arch.dense_layers()
        .iter()
        .fold(arch.noise_params(), |n, &(_, i, o)| {
            n.saturating_add(i.saturating_mul(o).saturating_add(o))
        })
}

/// Checks a model shape against the limits (widths, latent, window, parameter count).
///
/// # Errors
/// The first value out of its range.
pub fn check_arch(arch: &Arch) -> anyhow::Result<()> {
    in_range("--window", arch.window(), 1, MAX_WINDOW)?;
    check_widths("--hidden", &arch.encoder_hidden)?;
    check_widths("--decoder-hidden", &arch.decoder_hidden)?;
    in_range("--latent", arch.latent, 1, MAX_LATENT)?;
    let n = param_count(arch);
    let list = |w: &[usize]| w.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    anyhow::ensure!(
        n <= MAX_PARAMS,
        "the model would have {n} parameters (input {} = window {} x {} channels, --hidden {}, \
         --latent {}, --decoder-hidden {}); at most {MAX_PARAMS} are allowed (1 MB of int8 \
         weights, the flash of a large microcontroller): use a shorter --window or narrower layers",
        arch.input,
        arch.window(),
        arch.channels,
        list(&arch.encoder_hidden),
        arch.latent,
        list(&arch.decoder_hidden)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::NoiseKind;

    fn arch(window: usize, hidden: usize, latent: usize) -> Arch {
        Arch {
            input: window * 6,
            encoder_hidden: vec![hidden],
            latent,
            decoder_hidden: vec![hidden],
            noise: NoiseKind::PerFeature,
            channels: 6,
        }
    }

    #[test]
    fn default_model_fits_and_huge_ones_do_not() {
        assert!(check_arch(&arch(64, 60, 32)).is_ok());
        let e = check_arch(&arch(128, 1024, 32)).unwrap_err().to_string();
        assert!(e.contains("parameters") && e.contains("1000000"), "{e}");
        let e = check_arch(&arch(64, 60, 1_000_000))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--latent 1000000 is out of range: valid values are 1 to 256"
        );
        assert_eq!(param_count(&arch(usize::MAX / 6, 1, 1)), usize::MAX);
    }

    #[test]
    fn request_bounds_name_the_option() {
        let cfg = TrainConfig {
            epochs: 1 << 62,
            ..TrainConfig::default()
        };
        let e = check_request(64, [32, 1], &[60], None, Some(8), &cfg).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--epochs {} is out of range: valid values are 1 to 100000",
                1u64 << 62
            )
        );
        let cfg = TrainConfig::default();
        let e = check_request(64, [32, 1], &[100_000], None, None, &cfg).unwrap_err();
        assert!(e.to_string().starts_with("--hidden 100000"), "{e}");
        assert!(check_request(64, [32, 1], &[60], None, None, &cfg).is_ok());
    }
}
