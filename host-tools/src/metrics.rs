//! Detection metrics: ROC AUC, PR AUC (average precision), precision/recall/F1 at a threshold,
//! and threshold calibration at a target false-positive rate.
//!
//! Conventions: a higher score means more anomalous; a window raises an alarm when
//! `score > threshold` (strictly), positives are anomalous windows.
//!
//! ```text
//! ROC AUC = P(s_pos > s_neg) + 1/2 P(s_pos = s_neg)
//!         = (sum of the mid-ranks of the positives - P (P + 1) / 2) / (P N)     (Mann–Whitney U)
//! AP      = sum_k (R_k - R_{k-1}) P_k   over the distinct score values, descending
//!           (precision P_k and recall R_k of the alarms `score >= s_k`; tied scores form one step,
//!           the definition of scikit-learn's `average_precision_score`)
//! threshold at FPR f on normal scores s_1 <= ... <= s_n:  t = s_(n - floor(f n))
//!           so at most floor(f n) normal windows have score > t
//! ```
//!
//! All sums are in f64; the AUC is exact for the given ranks (ties count one half).

use serde::Serialize;

fn sorted_indices(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    idx
}

/// ROC AUC of `scores` for `labels` (`true` = anomalous). `None` if either class is empty.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(
        scores.len(),
        labels.len(),
        "scores and labels differ in length"
    );
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let idx = sorted_indices(scores);
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // ranks i+1 ..= j+1 share the mid-rank
        let mid = (i + j + 2) as f64 / 2.0;
        let p = idx[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum += mid * p as f64;
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (area under the precision–recall curve, step-wise). `None` without
/// positives.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(
        scores.len(),
        labels.len(),
        "scores and labels differ in length"
    );
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 {
        return None;
    }
    let mut idx = sorted_indices(scores);
    idx.reverse();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut prev_recall = 0.0f64;
    let mut ap = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j + 1;
    }
    Some(ap)
}

/// ROC curve points `(fpr, tpr)` from `(0, 0)` to `(1, 1)`, one per distinct score.
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count().max(1) as f64;
    let neg = labels.iter().filter(|&&l| !l).count().max(1) as f64;
    let mut idx = sorted_indices(scores);
    idx.reverse();
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            if labels[k] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        pts.push((fp as f64 / neg, tp as f64 / pos));
        i = j + 1;
    }
    pts
}

/// Counts and rates of the alarms `score > threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Confusion {
    /// Anomalous windows with an alarm.
    pub tp: usize,
    /// Normal windows with an alarm.
    pub fp: usize,
    /// Normal windows without an alarm.
    pub tn: usize,
    /// Anomalous windows without an alarm.
    pub fn_: usize,
    /// tp / (tp + fp) (0 without alarms).
    pub precision: f64,
    /// tp / (tp + fn) (0 without positives).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 if both are 0).
    pub f1: f64,
    /// fp / (fp + tn) (0 without negatives).
    pub fpr: f64,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Confusion counts and precision/recall/F1 at `threshold` (alarm when `score > threshold`).
pub fn confusion(scores: &[f32], labels: &[bool], threshold: f32) -> Confusion {
    let alarms: Vec<bool> = scores.iter().map(|&s| s > threshold).collect();
    confusion_of_alarms(&alarms, labels)
}

/// Confusion counts and precision/recall/F1 of per-window alarm decisions (e.g. the streaming
/// detector's, with smoothing or debounce).
pub fn confusion_of_alarms(alarms: &[bool], labels: &[bool]) -> Confusion {
    assert_eq!(
        alarms.len(),
        labels.len(),
        "alarms and labels differ in length"
    );
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for (&a, &l) in alarms.iter().zip(labels) {
        match (a, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Confusion {
        tp,
        fp,
        tn,
        fn_,
        precision,
        recall,
        f1,
        fpr: ratio(fp, fp + tn),
    }
}

/// The threshold at which at most `floor(fpr * n)` of the `n` normal scores raise an alarm
/// (`score > threshold`): the `(n - floor(fpr n))`-th smallest normal score. `None` if
/// `normal_scores` is empty or `fpr` is outside `[0, 1]`.
pub fn threshold_at_fpr(normal_scores: &[f32], fpr: f64) -> Option<f32> {
    if normal_scores.is_empty() || !(0.0..=1.0).contains(&fpr) {
        return None;
    }
    let mut s = normal_scores.to_vec();
    s.sort_by(f32::total_cmp);
    let n = s.len();
    let allowed = ((fpr * n as f64).floor() as usize).min(n);
    if allowed == n {
        // every window may alarm: a threshold below all scores
        return Some(f32::MIN);
    }
    Some(s[n - 1 - allowed])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// O(P N) reference: P(s_pos > s_neg) + 1/2 P(=).
    fn auc_pairs(s: &[f32], l: &[bool]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (i, &a) in s.iter().enumerate() {
            for (j, &b) in s.iter().enumerate() {
                if l[i] && !l[j] {
                    den += 1.0;
                    num += if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        num / den
    }

    #[test]
    fn auc_matches_pairwise_definition() {
        let mut x = 12345u32;
        for case in 0..50 {
            let n = 5 + case;
            let mut s = Vec::new();
            let mut l = Vec::new();
            for i in 0..n {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // few distinct values => many ties
                s.push((x % 7) as f32);
                l.push(i % 3 == 0 || x.is_multiple_of(5));
            }
            let got = roc_auc(&s, &l).unwrap();
            let want = auc_pairs(&s, &l);
            assert!(
                (got - want).abs() < 1e-12,
                "scores {s:?} labels {l:?}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn auc_extremes() {
        let l = [false, false, true, true];
        assert_eq!(roc_auc(&[1.0, 2.0, 3.0, 4.0], &l), Some(1.0));
        assert_eq!(roc_auc(&[4.0, 3.0, 2.0, 1.0], &l), Some(0.0));
        assert_eq!(roc_auc(&[1.0; 4], &l), Some(0.5));
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]), None);
    }

    #[test]
    fn average_precision_closed_forms() {
        // perfect ranking
        let l = [false, true, false, true];
        assert_eq!(average_precision(&[0.0, 5.0, 1.0, 6.0], &l), Some(1.0));
        // ranking pos, neg, pos: AP = 1/2 * 1 + 1/2 * 2/3
        let ap = average_precision(&[3.0, 2.0, 1.0], &[true, false, true]).unwrap();
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-12, "{ap}");
        // all tied: one step with precision = prevalence
        let ap = average_precision(&[1.0; 4], &[true, false, false, false]).unwrap();
        assert!((ap - 0.25).abs() < 1e-12, "{ap}");
    }

    #[test]
    fn threshold_respects_fpr() {
        let normal: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let t = threshold_at_fpr(&normal, 0.01).unwrap();
        assert_eq!(t, 197.0); // 198, 199 above: 2 = floor(0.01 * 200)
        let alarms = normal.iter().filter(|&&s| s > t).count();
        assert_eq!(alarms, 2);
        assert_eq!(threshold_at_fpr(&normal, 0.0), Some(199.0));
        assert_eq!(threshold_at_fpr(&normal, 1.0), Some(f32::MIN));
        assert_eq!(threshold_at_fpr(&[], 0.01), None);
        // ties at the threshold never alarm
        let t = threshold_at_fpr(&[1.0, 1.0, 1.0, 1.0], 0.5).unwrap();
        assert_eq!(t, 1.0);
    }

    #[test]
    fn confusion_counts() {
        let c = confusion(
            &[0.0, 2.0, 3.0, 1.0, 5.0],
            &[false, false, true, true, true],
            1.5,
        );
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 1, 1));
        assert!((c.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.fpr - 0.5).abs() < 1e-12);
    }

    #[test]
    fn roc_curve_ends() {
        let pts = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]);
        assert_eq!(pts.first(), Some(&(0.0, 0.0)));
        assert_eq!(pts.last(), Some(&(1.0, 1.0)));
        assert_eq!(pts.len(), 5);
    }
}
