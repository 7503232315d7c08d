//! The operands of graft's candle custom ops on the CPU: contiguous float32 or float64 slices.

use candle_core::{CpuStorage, Layout, WithDType};

/// The contiguous values of one operand of `op`.
pub fn slice<'a, T: WithDType>(op: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    let (start, end) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{op}: a non-contiguous operand")))?;
    Ok(&s.as_slice::<T>()?[start..end])
}

/// `f` of two operands of `op`, float32 or float64 both.
pub fn dispatch2(
    op: &str,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    f32s: impl Fn(&[f32], &[f32]) -> Vec<f32>,
    f64s: impl Fn(&[f64], &[f64]) -> Vec<f64>,
) -> candle_core::Result<CpuStorage> {
    match (s1, s2) {
        (CpuStorage::F32(_), CpuStorage::F32(_)) => Ok(CpuStorage::F32(f32s(slice(op, s1, l1)?, slice(op, s2, l2)?))),
        (CpuStorage::F64(_), CpuStorage::F64(_)) => Ok(CpuStorage::F64(f64s(slice(op, s1, l1)?, slice(op, s2, l2)?))),
        _ => Err(candle_core::Error::Msg(format!("{op}: float32 or float64 operands of one type"))),
    }
}

/// The elementwise sum of `parts` (each `len` long), added in order, so that it does not depend
/// on how many threads made them.
pub fn sum_in_order<T: Copy + Default + std::ops::AddAssign>(parts: Vec<Vec<T>>, len: usize) -> Vec<T> {
    let mut sums = vec![T::default(); len];
    for part in parts {
        sums.iter_mut().zip(part).for_each(|(s, p)| *s += p);
    }
    sums
}
