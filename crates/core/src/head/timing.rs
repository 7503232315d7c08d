//! `timing.json`: the seconds each training epoch took. Wall time is not reproducible, so it
//! sits beside `head.json` (which a rerun with the same seed and threads writes byte for byte)
//! rather than in it; the folder's manifest lists it, so it is never mixed with another run's.

use serde::{Deserialize, Serialize};

pub const FILE: &str = "timing.json";
pub const FORMAT: &str = "graft-timing/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    pub format: String,
    /// Threads training ran on.
    pub threads: usize,
    /// Seconds of each epoch (training and scoring val), epoch 1 first.
    pub epoch_seconds: Vec<f64>,
}

impl Timing {
    pub fn new(threads: usize, epoch_seconds: Vec<f64>) -> Self {
        Self { format: FORMAT.into(), threads, epoch_seconds }
    }

    /// What is wrong with it for a history of `epochs` records, if anything.
    pub fn defect(&self, epochs: usize) -> Option<String> {
        if self.format != FORMAT {
            return Some(format!("`{FILE}` has format `{}`, expected `{FORMAT}`", self.format));
        }
        if self.epoch_seconds.len() != epochs {
            return Some(format!("`{FILE}` times {} epochs, `head.json` records {epochs}", self.epoch_seconds.len()));
        }
        if let Some((i, s)) = self.epoch_seconds.iter().enumerate().find(|(_, s)| !(s.is_finite() && **s >= 0.0)) {
            return Some(format!("`{FILE}`: epoch {} took {s} seconds, expected a finite number >= 0", i + 1));
        }
        if self.threads == 0 {
            return Some(format!("`{FILE}`: `threads` is 0"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timing_that_does_not_fit_the_history_is_refused() {
        let ok = Timing::new(2, vec![1.5, 2.0]);
        assert_eq!(ok.defect(2), None);
        assert!(ok.defect(3).unwrap().contains("times 2 epochs, `head.json` records 3"));
        assert!(Timing::new(2, vec![1.0, f64::NAN]).defect(2).unwrap().contains("epoch 2 took NaN"));
        assert!(Timing::new(2, vec![-1.0]).defect(1).unwrap().contains("epoch 1 took -1"));
        assert!(Timing::new(0, vec![1.0]).defect(1).unwrap().contains("`threads` is 0"));
        let old = Timing { format: "graft-timing/0".into(), ..ok };
        assert!(old.defect(2).unwrap().contains("expected `graft-timing/1`"));
    }
}
