//! Image bytes to a backbone's input, the same at training and scoring time: decode (PNG or
//! JPEG, any bit depth or channel layout, as RGB), shorter side resized (bilinear, as
//! Pillow's), centre crop, `[0, 1]`, per-channel normalisation, channels first or last; and
//! seeded augmented views of the result. Colour JPEGs are decoded into a buffer each thread
//! keeps, the model input written in place. A decoder that panics on hostile bytes gives an
//! error instead.

use graft_core::artifact::Augment;
use graft_core::spec::{ImageSpec, Layout};
use image::{DynamicImage, GrayImage};

/// Files taken as images when a folder is listed.
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The most a decoded image may take: the decoder's own default limit.
const MAX_DECODED_BYTES: u64 = 512 << 20;

/// The most bytes an encoded image may have.
pub const MAX_ENCODED_BYTES: u64 = 256 << 20;

/// An image file's bytes, or why they cannot be read. Only a regular file (a symlink to one
/// is followed) is read, so that a pipe or a device named like an image neither blocks a run
/// nor fills its memory.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file (a pipe, a device or a folder named like an image)".into());
    }
    read_encoded(std::fs::File::open(path).map_err(|e| e.to_string())?, meta.len())
}

/// The bytes of an encoded image that says it has `size` bytes (a file's or an archive
/// entry's), refused past [`MAX_ENCODED_BYTES`].
pub fn read_encoded(reader: impl std::io::Read, size: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let too_large =
        |size: u64| format!("{size} bytes is larger than an image may be ({} MiB)", MAX_ENCODED_BYTES >> 20);
    if size > MAX_ENCODED_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    reader.take(MAX_ENCODED_BYTES + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_ENCODED_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Image bytes decoded, or why they cannot be. The decoder's default limits (512 MiB of
/// pixels) refuse images that would exhaust memory.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, String> {
    guarded(|| {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| e.to_string())?
            .decode()
            .map_err(|e| e.to_string())
    })
}

fn too_large_to_decode(w: impl std::fmt::Display, h: impl std::fmt::Display) -> String {
    format!("{w} x {h} is too large to decode (more than {} MiB)", MAX_DECODED_BYTES >> 20)
}

/// `f`, a call into a decoder: hostile bytes can trip the decoders' internal assertions, and
/// such a panic becomes an error like any other.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    graft_core::guard::unwind(f).map_err(|panic| format!("the decoder failed on it ({panic})"))?
}

/// Width and height from the header, the file's end and a PNG's chunk CRCs: a cheap check,
/// without decoding, that the bytes are a whole PNG or JPEG of a positive size. (The JPEG
/// decoder fills a truncated file's missing rows with grey rather than failing; this refuses
/// it.)
pub fn check(bytes: &[u8]) -> Result<(u32, u32), String> {
    guarded(|| check_unguarded(bytes))
}

fn check_unguarded(bytes: &[u8]) -> Result<(u32, u32), String> {
    let reader =
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let whole = match reader.format() {
        Some(image::ImageFormat::Jpeg) => {
            // The end-of-image marker after the last start of scan (scan data cannot hold
            // 0xFF 0xD9: a 0xFF byte there is followed by 0x00).
            matches!((last_marker(bytes, 0xDA), last_marker(bytes, 0xD9)), (Some(scan), Some(end)) if end > scan)
        }
        Some(image::ImageFormat::Png) => png_chunks_whole(bytes)?,
        _ => return Err("not a PNG or JPEG image".into()),
    };
    if !whole {
        return Err("the file is truncated (it ends before the image does)".into());
    }
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if w == 0 || h == 0 {
        return Err(format!("{w} x {h} has no pixels"));
    }
    // What the decoder would allocate at most (RGBA, 16 bits a channel) against its limit.
    if u64::from(w) * u64::from(h) * 8 > MAX_DECODED_BYTES {
        return Err(too_large_to_decode(w, h));
    }
    Ok((w, h))
}

/// Where the last JPEG marker `0xFF marker` in `bytes` starts. (The 0xFF bytes are found by
/// `memrchr`, a whole vector at a time: a byte-by-byte search back to a baseline JPEG's
/// only start of scan, near the file's beginning, was a third of `graft-preprocess`'s time.)
fn last_marker(bytes: &[u8], marker: u8) -> Option<usize> {
    let mut end = bytes.len();
    while let Some(i) = memchr::memrchr(0xFF, &bytes[..end]) {
        if bytes.get(i + 1) == Some(&marker) {
            return Some(i);
        }
        end = i;
    }
    None
}

/// Whether the PNG's chunks run whole to `IEND`, each matching its CRC. A changed byte
/// (bit rot, a bad copy) fails a CRC, which the decoder would report only at decode time.
fn png_chunks_whole(bytes: &[u8]) -> Result<bool, String> {
    let mut at = 8;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let Some(body) = bytes.get(at + 4..at + 8 + len) else { return Ok(false) };
        let Some(crc) = bytes.get(at + 8 + len..at + 12 + len) else { return Ok(false) };
        if crc32fast::hash(body) != u32::from_be_bytes(crc.try_into().expect("4 bytes")) {
            let name = String::from_utf8_lossy(&body[..4]);
            return Err(format!("chunk `{name}` at byte {at} does not match its CRC (the file is corrupt)"));
        }
        if &body[..4] == b"IEND" {
            return Ok(true);
        }
        at += 12 + len;
    }
    Ok(false)
}

/// A square grey image from a row of pixel values, PNG-encoded (lossless).
pub fn grey_png(values: &[u8], side: u32) -> Result<Vec<u8>, String> {
    let image = GrayImage::from_raw(side, side, values.to_vec()).ok_or("pixel count does not match the side")?;
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// The model's input for views `views` of one image's bytes, in that order, written to `out`
/// (`views.len()` inputs of `3 * size * size`): view 0 is the image transformed; view `v > 0`
/// is augmented with the seed of (`seed`, `id`, `v`).
pub fn views_into(
    bytes: &[u8],
    spec: &ImageSpec,
    id: &str,
    views: &[u32],
    seed: u64,
    aug: &Augment,
    out: &mut [f32],
) -> Result<(), String> {
    let s = spec.size as usize;
    let per = 3 * s * s;
    assert_eq!(out.len(), views.len() * per, "one model input per view");
    let plain = spec.layout == Layout::Nchw && views.iter().all(|&v| v == 0);
    if plain {
        // The common case: the transform written straight into its place.
        let (first, rest) = out.split_at_mut(per);
        with_rgb(bytes, |rgb| transform_into(rgb, spec, first))?;
        rest.chunks_exact_mut(per).for_each(|view| view.copy_from_slice(first));
        return Ok(());
    }
    let mut pixels = vec![0f32; per];
    with_rgb(bytes, |rgb| transform_into(rgb, spec, &mut pixels))?;
    for (&view, dest) in views.iter().zip(out.chunks_exact_mut(per)) {
        let augmented;
        let chw = if view == 0 {
            &pixels
        } else {
            let mut rng = graft_core::rng::SplitMix64::new(view_seed(seed, id, view as usize));
            augmented = augment(&pixels, s, aug, spec.mean, spec.std, &mut rng);
            &augmented
        };
        match spec.layout {
            Layout::Nchw => dest.copy_from_slice(chw),
            Layout::Nhwc => nhwc_into(chw, s, dest),
        }
    }
    Ok(())
}

/// Decoded pixels, 8-bit RGB, row after row.
#[derive(Debug, Clone, Copy)]
pub struct Rgb<'a> {
    pub width: u32,
    pub height: u32,
    pub pixels: &'a [u8],
}

impl<'a> Rgb<'a> {
    pub fn of(image: &'a image::RgbImage) -> Self {
        Self { width: image.width(), height: image.height(), pixels: image.as_raw() }
    }
}

thread_local! {
    /// Each thread's buffer for decoded JPEG pixels, kept between images.
    static DECODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest decoded image kept in a thread's buffer between images.
const KEPT_DECODED_BYTES: usize = 64 << 20;

/// `f` of the image's RGB pixels. A colour JPEG is decoded into the thread's buffer, exactly
/// as [`decode`] does (the same decoder and options) without its copies; other images go
/// through [`decode`].
fn with_rgb<T>(bytes: &[u8], f: impl FnOnce(Rgb) -> T) -> Result<T, String> {
    use zune_jpeg::zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let options = DecoderOptions::default()
            .set_strict_mode(false)
            .set_max_width(usize::MAX)
            .set_max_height(usize::MAX)
            .jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        guarded(|| decoder.decode_headers().map_err(|e| e.to_string()))?;
        let colour =
            !matches!(decoder.input_colorspace(), Some(ColorSpace::RGBA | ColorSpace::Luma | ColorSpace::LumaA) | None);
        if colour {
            let (w, h) = decoder.dimensions().ok_or("no dimensions in the JPEG header")?;
            let len = w * h * 3;
            if len as u64 > MAX_DECODED_BYTES {
                return Err(too_large_to_decode(w, h));
            }
            return DECODED.with_borrow_mut(|kept| {
                let mut own = Vec::new();
                let buffer = if len <= KEPT_DECODED_BYTES { kept } else { &mut own };
                if buffer.len() < len {
                    buffer.resize(len, 0);
                }
                guarded(|| decoder.decode_into(&mut buffer[..len]).map_err(|e| e.to_string()))?;
                Ok(f(Rgb { width: w as u32, height: h as u32, pixels: &buffer[..len] }))
            });
        }
    }
    let rgb = decode(bytes)?.into_rgb8();
    Ok(f(Rgb::of(&rgb)))
}

/// A thumbnail of image bytes, shorter side `side` pixels, as PNG bytes.
pub fn thumbnail(bytes: &[u8], side: u32) -> Result<Vec<u8>, String> {
    let image = decode(bytes)?;
    let scale = f64::from(side) / f64::from(image.width().min(image.height()));
    let (w, h) =
        ((f64::from(image.width()) * scale).round().max(1.0), (f64::from(image.height()) * scale).round().max(1.0));
    let small = image.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle).to_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    small.write_to(&mut out, image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// The spec's transforms of `rgb` into `out` (`3 * size * size`): shorter side to `resize`
/// (bilinear), centre `size` crop, [0, 1], `(x - mean) / std`, channels first.
pub fn transform_into(rgb: Rgb, spec: &ImageSpec, out: &mut [f32]) {
    let (w, h) = (rgb.width, rgb.height);
    let scale = spec.resize as f64 / w.min(h) as f64;
    let (nw, nh) =
        (((w as f64 * scale).round() as u32).max(spec.size), ((h as f64 * scale).round() as u32).max(spec.size));
    let (x0, y0) = ((nw - spec.size) / 2, (nh - spec.size) / 2);
    let s = spec.size as usize;
    let (cropped, row): (std::borrow::Cow<[u8]>, usize) = if (nw, nh) == (w, h) {
        (std::borrow::Cow::Borrowed(rgb.pixels), w as usize * 3)
    } else {
        // SIMD bilinear convolution (fast_image_resize), as Pillow's BILINEAR, of the centre
        // crop only: the crop's box in source coordinates (the kernels still read the
        // pixels around it, as a resize of the whole image would).
        let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
        let src = fast_image_resize::images::ImageRef::new(w, h, rgb.pixels, fast_image_resize::PixelType::U8x3)
            .expect("width x height x 3 bytes");
        let mut dst = fast_image_resize::images::Image::new(spec.size, spec.size, fast_image_resize::PixelType::U8x3);
        let options = fast_image_resize::ResizeOptions::new()
            .resize_alg(fast_image_resize::ResizeAlg::Convolution(fast_image_resize::FilterType::Bilinear))
            .crop(x0 as f64 * sx, y0 as f64 * sy, s as f64 * sx, s as f64 * sy);
        fast_image_resize::Resizer::new().resize(&src, &mut dst, &options).expect("RGB to RGB of a positive size");
        (std::borrow::Cow::Owned(dst.into_vec()), s * 3)
    };
    let (x0, y0) = if (nw, nh) == (w, h) { (x0 as usize, y0 as usize) } else { (0, 0) };
    // (v / 255 - mean) / std for every byte value, per channel.
    let table: Vec<[f32; 256]> =
        (0..3).map(|c| std::array::from_fn(|v| (v as f32 / 255.0 - spec.mean[c]) / spec.std[c])).collect();
    let (red, rest) = out.split_at_mut(s * s);
    let (green, blue) = rest.split_at_mut(s * s);
    for y in 0..s {
        let line = &cropped[(y0 + y) * row + x0 * 3..][..s * 3];
        for (x, p) in line.chunks_exact(3).enumerate() {
            red[y * s + x] = table[0][p[0] as usize];
            green[y * s + x] = table[1][p[1] as usize];
            blue[y * s + x] = table[2][p[2] as usize];
        }
    }
}

/// A seeded augmented view of a transformed image `[3, s, s]` (normalised with `mean`/`std`).
pub fn augment(
    pixels: &[f32],
    s: usize,
    a: &Augment,
    mean: [f32; 3],
    std: [f32; 3],
    rng: &mut graft_core::rng::SplitMix64,
) -> Vec<f32> {
    let pad = a.pad;
    let (dx, dy) = (rng.below(2 * pad + 1), rng.below(2 * pad + 1));
    let mirror = a.flip && rng.below(2) == 1;
    let angle = (a.rotate * (2.0 * rng.next_f64() as f32 - 1.0)).to_radians();
    let (brightness, contrast) =
        (1.0 + a.jitter * (2.0 * rng.next_f64() as f32 - 1.0), 1.0 + a.jitter * (2.0 * rng.next_f64() as f32 - 1.0));
    let (sin, cos) = angle.sin_cos();
    let centre = (s as f32 - 1.0) / 2.0;
    // The source value of channel c at real position (x, y) of the padded, mirrored image.
    let sample = |c: usize, x: f32, y: f32| -> f32 {
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let at = |xi: f32, yi: f32| -> f32 {
            let (px, py) = (xi as isize - pad as isize, yi as isize - pad as isize);
            if px < 0 || py < 0 || px >= s as isize || py >= s as isize {
                return 0.0;
            }
            pixels[c * s * s + py as usize * s + px as usize]
        };
        let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
        let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let mut out = vec![0f32; pixels.len()];
    for c in 0..3 {
        for y in 0..s {
            for x in 0..s {
                // Rotate about the centre, then shift into the padded image and mirror.
                let (rx, ry) = (x as f32 - centre, y as f32 - centre);
                let (sx, sy) = (cos * rx + sin * ry + centre, -sin * rx + cos * ry + centre);
                let sx = if mirror { s as f32 - 1.0 - sx } else { sx };
                out[c * s * s + y * s + x] = sample(c, sx + dx as f32, sy + dy as f32);
            }
        }
    }
    if a.jitter > 0.0 {
        // In [0, 1] pixel space: contrast about the image's mean grey, then brightness.
        let grey = |v: &[f32]| -> f32 {
            (0..3).map(|c| v[c * s * s..(c + 1) * s * s].iter().map(|x| x * std[c] + mean[c]).sum::<f32>()).sum::<f32>()
                / (3 * s * s) as f32
        };
        let m = grey(&out);
        for c in 0..3 {
            for v in &mut out[c * s * s..(c + 1) * s * s] {
                let p = ((*v * std[c] + mean[c] - m) * contrast + m) * brightness;
                *v = (p - mean[c]) / std[c];
            }
        }
    }
    out
}

/// `[3, s, s]` as `[s, s, 3]`, into `out`.
pub fn nhwc_into(chw: &[f32], s: usize, out: &mut [f32]) {
    for c in 0..3 {
        for i in 0..s * s {
            out[i * 3 + c] = chw[c * s * s + i];
        }
    }
}

/// The seed of view `view` of image `id`.
pub fn view_seed(seed: u64, id: &str, view: usize) -> u64 {
    let hash = blake3::hash(id.as_bytes());
    let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().expect("8 bytes");
    seed ^ u64::from_le_bytes(bytes) ^ (view as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u32, resize: u32) -> ImageSpec {
        ImageSpec {
            input: "x".into(),
            size,
            resize,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 1.0],
            layout: Default::default(),
        }
    }

    fn transform(image: &DynamicImage, spec: &ImageSpec) -> Vec<f32> {
        let mut out = vec![0f32; 3 * (spec.size * spec.size) as usize];
        transform_into(Rgb::of(&image.to_rgb8()), spec, &mut out);
        out
    }

    fn encoded(image: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn jpeg(image: &DynamicImage) -> Vec<u8> {
        encoded(image, image::ImageFormat::Jpeg)
    }

    #[test]
    fn jpegs_decode_to_the_same_pixels_as_the_image_decoder() {
        // Colour (YCbCr, chroma subsampled) through the thread's buffer, twice, the second
        // time smaller than the first; grey through `decode`.
        let colour = |w, h| {
            DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 7 + y) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
            }))
        };
        let grey = DynamicImage::ImageLuma8(GrayImage::from_fn(19, 11, |x, y| image::Luma([(x * 13 + y * 7) as u8])));
        for image in [colour(37, 23), colour(9, 30), grey] {
            let bytes = jpeg(&image);
            let expected = decode(&bytes).unwrap().to_rgb8();
            let found = with_rgb(&bytes, |rgb| (rgb.width, rgb.height, rgb.pixels.to_vec())).unwrap();
            assert_eq!(found, (expected.width(), expected.height(), expected.into_raw()));
        }
        assert!(with_rgb(&[0xFF, 0xD8, 0xFF, 0x00], |_| ()).is_err(), "a broken header is an error");
    }

    #[test]
    fn a_decoder_panic_on_hostile_bytes_is_an_error() {
        // A progressive JPEG whose frame claims chroma sampling its scans lack
        // (scripts/make_fixtures.py): zune-jpeg 0.5 asserts, and panics, while upsampling.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tiny-images/hostile.jpg");
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(check(&bytes).unwrap(), (16, 16), "its header and end are sound");
        let spec = spec(8, 8);
        let mut out = vec![0f32; 3 * 64];
        for _ in 0..2 {
            let err = views_into(&bytes, &spec, "a", &[0], 0, &Augment::default(), &mut out).unwrap_err();
            assert!(err.starts_with("the decoder failed on it ("), "{err}");
        }
        // The thread's buffer is still usable after the panic.
        let good = jpeg(&DynamicImage::ImageRgb8(image::RgbImage::from_pixel(16, 16, image::Rgb([200, 100, 0]))));
        views_into(&good, &spec, "b", &[0], 0, &Augment::default(), &mut out).unwrap();
        assert!((out[0] - (200.0 / 255.0 - 0.5) / 0.5).abs() < 0.02, "{}", out[0]);
    }

    #[test]
    fn the_last_marker_is_the_last_0xff_followed_by_it() {
        // Against a plain search of every pair, on bytes dense in 0xFF (runs of fill bytes,
        // stuffed 0xFF 0x00) and at the edges.
        let naive = |bytes: &[u8], marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
        let mut rng = graft_core::rng::SplitMix64::new(7);
        for len in [0, 1, 2, 3, 17, 64, 1000] {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len).map(|_| [0xFF, 0xFF, 0x00, 0xD9, 0xDA, 0x12][rng.below(6)]).collect();
                for marker in [0xD9, 0xDA, 0xFF, 0x00] {
                    assert_eq!(last_marker(&bytes, marker), naive(&bytes, marker), "{bytes:02x?} {marker:02x}");
                }
            }
        }
    }

    #[test]
    fn a_png_whose_bytes_changed_or_end_early_is_refused_by_the_check() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(20, 10, |x, y| {
            image::Rgb([(x * 11) as u8, (y * 23) as u8, (x * y) as u8])
        }));
        let bytes = encoded(&image, image::ImageFormat::Png);
        assert_eq!(check(&bytes).unwrap(), (20, 10));
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"bytes after IEND");
        assert_eq!(check(&trailing).unwrap(), (20, 10), "bytes after the last chunk are ignored, as decoders do");
        let idat = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
        for at in [idat + 4, idat + 12, bytes.len() - 20] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            let err = check(&flipped).unwrap_err();
            assert!(err.contains("does not match its CRC"), "byte {at}: {err}");
            assert!(decode(&flipped).is_err(), "byte {at}: the decoder refuses it too, but only when decoding");
        }
        let err = check(&bytes[..bytes.len() - 12]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn views_are_written_in_place_in_either_layout() {
        let image = DynamicImage::ImageRgb8(image::RgbImage::from_fn(12, 8, |x, y| {
            image::Rgb([x as u8 * 20, y as u8 * 30, 90])
        }));
        let bytes = encoded(&image, image::ImageFormat::Png);
        let chw = transform(&image, &spec(4, 6));
        let mut out = vec![f32::NAN; 2 * 48];
        views_into(&bytes, &spec(4, 6), "a", &[0, 0], 1, &Augment::default(), &mut out).unwrap();
        assert_eq!((&out[..48], &out[48..]), (&chw[..], &chw[..]));
        let nhwc = ImageSpec { layout: Layout::Nhwc, ..spec(4, 6) };
        views_into(&bytes, &nhwc, "a", &[0, 1], 1, &Augment::default(), &mut out).unwrap();
        let mut expected = vec![0f32; 48];
        nhwc_into(&chw, 4, &mut expected);
        // No augmentation configured: view 1 is view 0.
        assert_eq!((&out[..48], &out[48..]), (&expected[..], &expected[..]));
    }

    #[test]
    fn grey_becomes_rgb_normalised_per_channel_channels_first() {
        let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(4, 4, image::Luma([255])));
        let out = transform(&img, &spec(4, 4));
        assert_eq!(out.len(), 48);
        // (1 - mean) / std per channel: 1, 3, 1.
        assert!(out[..16].iter().all(|v| (v - 1.0).abs() < 1e-6));
        assert!(out[16..32].iter().all(|v| (v - 3.0).abs() < 1e-6));
        assert!(out[32..].iter().all(|v| (v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn augmented_views_are_shifted_mirrored_rotated_or_jittered_and_seeded() {
        // One channel pattern: value = x + 10 y, on a 4x4 image (3 channels alike).
        let s = 4;
        let base: Vec<f32> = (0..3 * s * s).map(|i| ((i % (s * s)) % s + 10 * ((i % (s * s)) / s)) as f32).collect();
        let (mean, std) = ([0.0; 3], [1.0; 3]);
        let view = |a: Augment, seed| augment(&base, s, &a, mean, std, &mut graft_core::rng::SplitMix64::new(seed));
        assert_eq!(view(Augment::default(), 1), base, "no augmentation: unchanged");
        let shift_flip = Augment { pad: 1, flip: true, ..Augment::default() };
        assert_eq!(view(shift_flip, 5), view(shift_flip, 5), "seeded");
        let views: Vec<Vec<f32>> = (0..20).map(|seed| view(shift_flip, seed)).collect();
        assert!(views.iter().any(|v| *v != base), "some views differ");
        // Shifts and mirrors move whole pixels: every non-zero value is one of the image's.
        assert!(views.iter().all(|v| v.iter().all(|x| *x == 0.0 || base.contains(x))));
        let flipped: Vec<f32> = (0..3 * s * s).map(|i| base[(i / s) * s + (s - 1 - i % s)]).collect();
        let mirror_only = Augment { flip: true, ..Augment::default() };
        assert!((0..10).all(|seed| [base.clone(), flipped.clone()].contains(&view(mirror_only, seed))));
        // Rotation turns about the centre: on a 5x5 image the centre pixel stays, others move.
        let odd: Vec<f32> = (0..3 * 25).map(|i| (i % 25) as f32).collect();
        let turned = augment(
            &odd,
            5,
            &Augment { rotate: 30.0, ..Augment::default() },
            mean,
            std,
            &mut graft_core::rng::SplitMix64::new(3),
        );
        assert!((turned[12] - odd[12]).abs() < 1e-5 && turned != odd);
        // Jitter scales values about the mean grey; a constant image stays constant.
        let flat = vec![0.5f32; 3 * s * s];
        let jittered = augment(
            &flat,
            s,
            &Augment { jitter: 0.5, ..Augment::default() },
            mean,
            std,
            &mut graft_core::rng::SplitMix64::new(2),
        );
        assert!(jittered.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-6) && (jittered[0] - 0.5).abs() > 1e-4);
    }

    #[test]
    fn channels_last_layout() {
        let chw: Vec<f32> = (0..12).map(|i| i as f32).collect(); // 3 channels of 2x2
        let mut out = vec![0f32; 12];
        nhwc_into(&chw, 2, &mut out);
        assert_eq!(out, [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
    }

    #[test]
    fn shorter_side_is_resized_then_the_centre_cropped() {
        // 8 wide, 4 high: left half black, right half white; resized to 4 high (no change),
        // then the centre 4x4 spans both halves equally.
        let img = GrayImage::from_fn(8, 4, |x, _| image::Luma([if x < 4 { 0 } else { 255 }]));
        let out = transform(&DynamicImage::ImageLuma8(img), &ImageSpec { mean: [0.0; 3], std: [1.0; 3], ..spec(4, 4) });
        let row: Vec<f32> = out[..4].to_vec();
        assert_eq!(row, [0.0, 0.0, 1.0, 1.0]);
        // Shorter side 4 -> 8: the output is 8x8 from a 16x8 resize.
        let img = GrayImage::from_pixel(8, 4, image::Luma([51]));
        let out = transform(&DynamicImage::ImageLuma8(img), &ImageSpec { mean: [0.0; 3], std: [1.0; 3], ..spec(8, 8) });
        assert_eq!(out.len(), 3 * 64);
        assert!(out.iter().all(|v| (v - 0.2).abs() < 1e-6), "a constant image stays constant");
    }
}
