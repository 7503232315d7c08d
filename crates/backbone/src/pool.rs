//! Pooling of token vectors into one vector per row.

use graft_core::spec::Pooling;

/// Width of the pooled vector of a `dim`-wide token vector.
pub fn pooled_dim(dim: usize, pooling: Pooling) -> usize {
    if pooling == Pooling::MeanMax { 2 * dim } else { dim }
}

/// Pools `hidden` (`[rows, seq, dim]`, row-major) over each row's first `lengths[r]`
/// tokens; returns `[rows, pooled_dim(dim)]`. Not for `Gap` (see [`global_average`]).
pub fn pool(hidden: &[f32], seq: usize, dim: usize, lengths: &[usize], pooling: Pooling) -> Vec<f32> {
    let width = pooled_dim(dim, pooling);
    let mut out = vec![0f32; lengths.len() * width];
    for (r, (&len, o)) in lengths.iter().zip(out.chunks_exact_mut(width)).enumerate() {
        let row = &hidden[r * seq * dim..(r + 1) * seq * dim];
        let tokens = || row.chunks_exact(dim).take(len.max(1));
        let mean = |o: &mut [f32]| {
            for token in tokens() {
                o.iter_mut().zip(token).for_each(|(a, &x)| *a += x);
            }
            let inv = 1.0 / len.max(1) as f32;
            o.iter_mut().for_each(|a| *a *= inv);
        };
        let max = |o: &mut [f32]| {
            o.fill(f32::NEG_INFINITY);
            for token in tokens() {
                o.iter_mut().zip(token).for_each(|(a, &x)| *a = a.max(x));
            }
        };
        match pooling {
            Pooling::Cls => o.copy_from_slice(&row[..dim]),
            Pooling::Mean => mean(o),
            Pooling::Max => max(o),
            Pooling::MeanMax => {
                let (m, x) = o.split_at_mut(dim);
                mean(m);
                max(x);
            }
            Pooling::Gap | Pooling::None => unreachable!("not token pooling"),
        }
    }
    out
}

/// Pools one output tensor of shape `dims` (first dimension `rows`) into `[rows, width]`.
/// `lengths` are each row's real tokens for `[batch, seq, dim]` (all positions when `None`).
/// On a rank the pooling cannot handle, says what it needs.
pub fn pool_tensor(
    dims: &[i64],
    data: &[f32],
    rows: usize,
    lengths: Option<&[usize]>,
    pooling: Pooling,
) -> Result<(Vec<f32>, usize), &'static str> {
    if dims.first().is_none_or(|&b| b as usize != rows) {
        return Err("a first dimension of one row per input");
    }
    let d = |i: usize| dims[i] as usize;
    match (pooling, dims.len()) {
        (Pooling::Gap, 4) => Ok((global_average(data, rows, d(1), d(2) * d(3)), d(1))),
        (Pooling::Gap, _) => Err("[batch, channels, height, width] for `gap`"),
        (Pooling::None, 2) => Ok((data.to_vec(), d(1))),
        (Pooling::None, _) => Err("[batch, dim] for `none`"),
        (pooling, 3) => {
            let full = vec![d(1); rows];
            let lengths = lengths.unwrap_or(&full);
            Ok((pool(data, d(1), d(2), lengths, pooling), pooled_dim(d(2), pooling)))
        }
        _ => Err("[batch, sequence, dim] for token pooling"),
    }
}

/// Global average pooling of `maps` (`[rows, channels, spatial]`, row-major): `[rows, channels]`.
pub fn global_average(maps: &[f32], rows: usize, channels: usize, spatial: usize) -> Vec<f32> {
    let inv = 1.0 / spatial.max(1) as f32;
    maps.chunks_exact(spatial.max(1)).take(rows * channels).map(|plane| plane.iter().sum::<f32>() * inv).collect()
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
    fn max_and_mean_max_ignore_padding() {
        assert_eq!(pool(&HIDDEN, 3, 2, &[2, 3], Pooling::Max), [3., 4., 4., 1.]);
        assert_eq!(pool(&HIDDEN, 3, 2, &[2, 3], Pooling::MeanMax), [2., 3., 3., 4., 2., 1., 4., 1.]);
    }

    #[test]
    fn global_average_pools_each_channel() {
        // One row, two channels of 2x2.
        assert_eq!(global_average(&[1., 2., 3., 4., 0., 0., 0., 8.], 1, 2, 4), [2.5, 2.]);
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
