//! Pooling of token vectors into one vector per row.

use graft_core::spec::Pooling;

/// Pools `hidden` (`[rows, seq, dim]`, row-major) over each row's first `lengths[r]`
/// tokens; returns `[rows, dim]`.
pub fn pool(hidden: &[f32], seq: usize, dim: usize, lengths: &[usize], pooling: Pooling) -> Vec<f32> {
    let mut out = vec![0f32; lengths.len() * dim];
    for (r, (&len, o)) in lengths.iter().zip(out.chunks_exact_mut(dim)).enumerate() {
        let row = &hidden[r * seq * dim..(r + 1) * seq * dim];
        match pooling {
            Pooling::Cls => o.copy_from_slice(&row[..dim]),
            Pooling::Mean => {
                for token in row.chunks_exact(dim).take(len) {
                    for (a, &x) in o.iter_mut().zip(token) {
                        *a += x;
                    }
                }
                let inv = 1.0 / len.max(1) as f32;
                o.iter_mut().for_each(|a| *a *= inv);
            }
        }
    }
    out
}

/// Scales each row of `rows` (`[n, dim]`) to unit L2 norm.
pub fn normalize_rows(rows: &mut [f32], dim: usize) {
    for row in rows.chunks_exact_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|a| *a /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two rows, seq 3, dim 2; row 0 has 2 real tokens, row 1 has 3.
    const HIDDEN: [f32; 12] = [1., 2., 3., 4., 100., 100., 0., 1., 2., 1., 4., 1.];

    #[test]
    fn mean_ignores_padding() {
        let out = pool(&HIDDEN, 3, 2, &[2, 3], Pooling::Mean);
        assert_eq!(out, [2., 3., 2., 1.]);
    }

    #[test]
    fn cls_takes_first_token_and_normalize_gives_unit_norm() {
        let mut out = pool(&HIDDEN, 3, 2, &[2, 3], Pooling::Cls);
        normalize_rows(&mut out, 2);
        let n0 = (1f32 + 4.).sqrt();
        assert!((out[0] - 1. / n0).abs() < 1e-6 && (out[1] - 2. / n0).abs() < 1e-6);
        assert!((out[2] - 0.).abs() < 1e-6 && (out[3] - 1.).abs() < 1e-6);
    }
}
