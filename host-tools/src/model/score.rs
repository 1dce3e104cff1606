//! Scoring windows with a [`HostModel`]: score kinds by name and [`score_windows`], which draws
//! the same random numbers as the chip's streaming detector.

use anyhow::{bail, Result};
use tinyvae::{Score, ScoreKind};

use super::HostModel;

/// Parses a score name: `elbo`, `elbo-sampled`, `iwae`, `recon-prob` (with `samples` draws for
/// the sampled ones).
///
/// # Errors
/// An unknown name or zero samples.
pub fn parse_score_kind(name: &str, samples: u16) -> Result<ScoreKind> {
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    Ok(match name {
        "elbo" => ScoreKind::Elbo,
        "elbo-sampled" => ScoreKind::ElboSampled { samples },
        "iwae" => ScoreKind::Iwae { samples },
        "recon-prob" => ScoreKind::ReconProb { samples },
        _ => bail!("unknown score {name:?} (elbo, elbo-sampled, iwae, recon-prob)"),
    })
}

/// The display name of a score kind, e.g. `elbo` or `iwae-16`.
pub fn score_name(kind: ScoreKind) -> String {
    match kind {
        ScoreKind::Elbo => "elbo".to_string(),
        ScoreKind::ElboSampled { samples } => format!("elbo-sampled-{samples}"),
        ScoreKind::Iwae { samples } => format!("iwae-{samples}"),
        ScoreKind::ReconProb { samples } => format!("recon-prob-{samples}"),
    }
}

/// Scores every window in order with [`tinyvae::score`]. Sampled scores of window `k` draw
/// from [`tinyvae::window_rng`]`(seed, k)`, the generator the library's streaming detector (and
/// so the firmware) uses for its `k`-th window, so the scores match the chip's.
///
/// # Errors
/// A library error, with the window index.
pub fn score_windows<'a>(
    model: &HostModel,
    windows: impl Iterator<Item = &'a [f32]>,
    kind: ScoreKind,
    seed: u64,
) -> Result<Vec<Score>> {
    let z = model.latent;
    let (mut mu, mut lv, mut zb, mut eps) =
        (vec![0.0; z], vec![0.0; z], vec![0.0; z], vec![0.0; z]);
    let mut mean = vec![0.0; model.input];
    let mut scratch = model.scratch();
    let mut sampler = tinyvae::NormalSampler::new();
    let mut out = Vec::new();
    for (i, x) in windows.enumerate() {
        let mut rng = tinyvae::window_rng(seed, i as u64);
        let buf = tinyvae::Buffers {
            mu: &mut mu,
            logvar: &mut lv,
            z: &mut zb,
            eps: &mut eps,
            mean: &mut mean,
        };
        let s = tinyvae::score(model, x, kind, buf, &mut scratch, &mut sampler, &mut rng)
            .map_err(|e| anyhow::anyhow!("window {i}: {e}"))?;
        out.push(s);
    }
    Ok(out)
}
