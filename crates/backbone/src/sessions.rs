//! How many sessions of a model run side by side, and several sessions of one text model,
//! each running whole inference batches. On the CPU, sessions of one thread each keep pace
//! where one session of as many threads stalls: that one waits on every thread inside every
//! operator, so a core held up elsewhere holds it up (MiniLM on 2 cores: one session of two
//! threads took 27-32 s on sentences and 51-68 s on reviews, two sessions 26-27 s and
//! 50-52 s). Text sessions hold one copy of the float32 weights between them
//! ([`crate::device::SharedWeights`]); image sessions are run by [`crate::image`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use graft_core::config::backbone::TokensDtype;

use crate::embed::Embedder;
use crate::error::{EmbedError, Error, Result};

/// A batch's features and their width, as [`Embedder::embed`] gives them.
type Embedded = (Vec<f32>, usize);

/// The intra-op threads of each session: `threads` (0: one per core of the `cores`) split
/// among `sessions` (0: on the CPU one per thread, at most one per core; one otherwise). A
/// lone session of threads not given gets 0: ONNX Runtime's choice, one per physical core.
pub fn plan(threads: usize, sessions: usize, cpu: bool, cores: usize) -> Result<Vec<usize>> {
    let given = threads > 0;
    let threads = if given { threads } else { cores.max(1) };
    if sessions > 1 && !cpu {
        return Err(Error::Sessions("sessions side by side run on the CPU".into()));
    }
    if given && sessions > threads {
        return Err(Error::Sessions(format!("{sessions} sessions need at least as many threads, not {threads}")));
    }
    let sessions = match sessions {
        0 if cpu => threads.min(cores.max(1)),
        0 => 1,
        n => n.min(threads),
    };
    if sessions == 1 && !given {
        return Ok(vec![0]);
    }
    Ok((0..sessions).map(|i| threads / sessions + usize::from(i < threads % sessions)).collect())
}

/// Sessions of one model, their features the same whichever runs a batch.
pub struct Embedders {
    members: Vec<Embedder>,
    /// Wall time spent embedding.
    pub inference: Duration,
}

impl std::fmt::Debug for Embedders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedders").field("sessions", &self.members.len()).finish_non_exhaustive()
    }
}

impl Embedders {
    pub fn new(members: Vec<Embedder>) -> Self {
        assert!(!members.is_empty(), "at least one session");
        Self { members, inference: Duration::ZERO }
    }

    /// See [`Embedder::tokens`].
    pub fn tokens(&self) -> Option<TokensDtype> {
        self.members[0].tokens()
    }

    /// [`Embedder::embed`] of every batch, in `batches` order; each session takes the next
    /// batch not yet taken, the last (in length order the longest) first, so that the short
    /// ones even out the end. `each_done` is called with each batch as it is done, on this
    /// thread. The error is that of the first batch that failed.
    pub fn embed_all(
        &mut self,
        batches: &[Vec<&[i32]>],
        each_done: &mut dyn FnMut(&[&[i32]]),
    ) -> Result<Vec<Embedded>, (usize, EmbedError)> {
        let started = Instant::now();
        let mut done: Vec<Option<Embedded>> = (0..batches.len()).map(|_| None).collect();
        let mut failures: Vec<(usize, EmbedError)> = Vec::new();
        let (taken, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            for member in &mut self.members {
                let (tx, taken, failed) = (tx.clone(), &taken, &failed);
                scope.spawn(move || {
                    while !failed.load(Ordering::Relaxed) {
                        let k = taken.fetch_add(1, Ordering::Relaxed);
                        let Some(i) = batches.len().checked_sub(k + 1) else { break };
                        let result = member.embed(&batches[i]);
                        failed.fetch_or(result.is_err(), Ordering::Relaxed);
                        if tx.send((i, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (i, result) in rx {
                match result {
                    Ok(embedded) => {
                        each_done(&batches[i]);
                        done[i] = Some(embedded);
                    }
                    Err(e) => failures.push((i, e)),
                }
            }
        });
        self.inference += started.elapsed();
        if let Some(first) = failures.into_iter().min_by_key(|(i, _)| *i) {
            return Err(first);
        }
        Ok(done.into_iter().map(|d| d.expect("every batch embedded")).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_split_among_sessions() {
        assert_eq!(plan(2, 0, true, 2).unwrap(), [1, 1], "one session a thread on the CPU");
        assert_eq!(plan(0, 0, true, 16).unwrap(), [1; 16], "a thread a core");
        assert_eq!(plan(5, 0, true, 2).unwrap(), [3, 2], "at most one session a core");
        assert_eq!(plan(3, 2, true, 2).unwrap(), [2, 1]);
        assert_eq!(plan(2, 0, false, 2).unwrap(), [2], "CUDA: one session");
        assert_eq!(plan(0, 0, false, 2).unwrap(), [0], "ONNX Runtime's choice");
        assert_eq!(plan(2, 1, true, 2).unwrap(), [2]);
        assert_eq!(plan(4, 4, true, 2).unwrap(), [1; 4], "as many as asked for");
        let err = plan(2, 3, true, 2).unwrap_err().to_string();
        assert!(err.contains("3 sessions need at least as many threads, not 2"), "{err}");
        assert!(plan(2, 2, false, 2).unwrap_err().to_string().contains("run on the CPU"));
    }
}
