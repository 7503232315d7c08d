//! Depthwise convolution channels-last as candle custom ops, forward and backward: candle's
//! grouped `conv2d` runs one convolution per group (1,152 of them in EfficientNet-Lite0's last
//! blocks), and a sum of k x k shifted products costs one strided tensor op per tap and its
//! backward. Gradients are checked against central differences by the trainer's tests.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_op::{dispatch2, sum_in_order};
use crate::error::Result;

/// The geometry of one depthwise convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    /// Input height and width.
    h: usize,
    w: usize,
    channels: usize,
    k: usize,
    stride: usize,
    /// Zero padding above and left of the input.
    top: usize,
    left: usize,
    /// Output height and width.
    oh: usize,
    ow: usize,
}

impl Geometry {
    /// Calls `f(input position, output position, tap)` for every input position a tap of an
    /// output position reads (padding skipped), positions as row offsets in units of channels.
    fn for_each(&self, mut f: impl FnMut(usize, usize, usize)) {
        for b in 0..self.batch {
            for oy in 0..self.oh {
                for ox in 0..self.ow {
                    let out = (b * self.oh + oy) * self.ow + ox;
                    for ky in 0..self.k {
                        let Some(iy) = (oy * self.stride + ky).checked_sub(self.top).filter(|&y| y < self.h) else {
                            continue;
                        };
                        for kx in 0..self.k {
                            let Some(ix) = (ox * self.stride + kx).checked_sub(self.left).filter(|&x| x < self.w)
                            else {
                                continue;
                            };
                            f((b * self.h + iy) * self.w + ix, out, ky * self.k + kx);
                        }
                    }
                }
            }
        }
    }
}

/// Which of the three computations an op is.
#[derive(Debug, Clone, Copy)]
enum Pass {
    /// (input `[b, h, w, c]`, taps `[k * k, c]`) -> output `[b, oh, ow, c]`.
    Forward,
    /// (output gradient, taps) -> input gradient.
    InputGrad,
    /// (input, output gradient) -> taps gradient.
    TapsGrad,
}

#[derive(Debug, Clone, Copy)]
struct Depthwise {
    geometry: Geometry,
    pass: Pass,
}

impl Depthwise {
    fn shape(&self) -> Shape {
        let g = self.geometry;
        match self.pass {
            Pass::Forward => (g.batch, g.oh, g.ow, g.channels).into(),
            Pass::InputGrad => (g.batch, g.h, g.w, g.channels).into(),
            Pass::TapsGrad => (g.k * g.k, g.channels).into(),
        }
    }

    /// Images run in parallel; the taps' gradient sums the images' parts in image order, so
    /// the result does not depend on the thread count.
    fn run<T>(&self, a: &[T], b: &[T]) -> Vec<T>
    where
        T: Copy + Default + Send + Sync + std::ops::Mul<Output = T> + std::ops::AddAssign,
    {
        let g = self.geometry;
        let (c, taps) = (g.channels, g.k * g.k * g.channels);
        let one = Geometry { batch: 1, ..g };
        let (image_in, image_out) = (g.h * g.w * c, g.oh * g.ow * c);
        match self.pass {
            Pass::Forward | Pass::InputGrad => {
                // Forward reads the input and writes the output; the input's gradient reads the
                // output's gradient and writes at the input's positions, by the same taps.
                let forward = matches!(self.pass, Pass::Forward);
                let (read, write) = if forward { (image_in, image_out) } else { (image_out, image_in) };
                let mut out = vec![T::default(); g.batch * write];
                out.par_chunks_mut(write).zip(a.par_chunks(read)).for_each(|(out, a)| {
                    one.for_each(|i, o, t| {
                        let (from, to) = if forward { (i, o) } else { (o, i) };
                        let (x, w, y) = (&a[from * c..][..c], &b[t * c..][..c], &mut out[to * c..][..c]);
                        y.iter_mut().zip(x.iter().zip(w)).for_each(|(y, (&x, &w))| *y += x * w);
                    })
                });
                out
            }
            Pass::TapsGrad => {
                let parts: Vec<Vec<T>> = a
                    .par_chunks(image_in)
                    .zip(b.par_chunks(image_out))
                    .map(|(a, b)| {
                        let mut out = vec![T::default(); taps];
                        one.for_each(|i, o, t| {
                            let (x, dy, dw) = (&a[i * c..][..c], &b[o * c..][..c], &mut out[t * c..][..c]);
                            dw.iter_mut().zip(x.iter().zip(dy)).for_each(|(dw, (&x, &dy))| *dw += x * dy);
                        });
                        out
                    })
                    .collect();
                sum_in_order(parts, taps)
            }
        }
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv-nhwc"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = dispatch2(self.name(), (s1, l1), (s2, l2), |a, b| self.run(a, b), |a, b| self.run(a, b))?;
        Ok((out, self.shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        taps: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let with = |pass| Depthwise { geometry: self.geometry, pass };
        let dx = grad.apply_op2_no_bwd(taps, &with(Pass::InputGrad))?;
        let dtaps = x.apply_op2_no_bwd(&grad, &with(Pass::TapsGrad))?;
        Ok((Some(dx), Some(dtaps)))
    }
}

/// The depthwise convolution of `x` `[batch, h, w, c]` (channels last) by `weight`
/// `[c, 1, k, k]` with `stride` and zero `pads` (top, left, bottom, right): `[batch, oh, ow, c]`.
pub fn conv(x: &Tensor, weight: &Tensor, stride: usize, pads: [usize; 4]) -> Result<Tensor> {
    let (batch, h, w, channels) = x.dims4()?;
    let k = weight.dim(2)?;
    let [top, left, bottom, right] = pads;
    let geometry = Geometry {
        batch,
        h,
        w,
        channels,
        k,
        stride,
        top,
        left,
        oh: (h + top + bottom - k) / stride + 1,
        ow: (w + left + right - k) / stride + 1,
    };
    let taps = weight.reshape((channels, k * k))?.t()?.contiguous()?;
    Ok(x.contiguous()?.apply_op2(&taps, Depthwise { geometry, pass: Pass::Forward })?)
}
