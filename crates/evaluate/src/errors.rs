//! What explains a classifier's errors: its most confident wrong predictions per pair of
//! classes (with the rows' text, or a thumbnail of their image, joined by id from the data
//! split), and for two classes the precision, recall and F1 at chosen thresholds of the
//! positive class's probability.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow::array::{Array, StringArray};
use base64::Engine;
use graft_core::artifact::ArtifactReader;

/// Most confident wrong predictions shown per (true, predicted) pair, and pairs shown.
pub const PER_PAIR: usize = 5;
pub const PAIRS: usize = 12;
/// Thumbnails' shorter side, in pixels.
const THUMBNAIL_SIDE: u32 = 96;
/// Characters of text shown per row.
const TEXT_CHARS: usize = 300;

/// One wrong prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Wrong {
    pub id: String,
    pub truth: String,
    pub predicted: String,
    /// The probability given to the predicted class.
    pub confidence: f64,
    /// The row's text, when the data split was given and has a text column.
    pub text: Option<String>,
    /// Its image as a `data:image/png` URI, when the data split holds pixels.
    pub thumbnail: Option<String>,
}

/// The [`PER_PAIR`] most confident wrong predictions of each (true, predicted) pair, pairs
/// with the most errors first (at most [`PAIRS`]), rows by confidence, ties by id.
pub fn most_confident_wrong(ids: &[String], truth: &[usize], proba: &[Vec<f64>], labels: &[String]) -> Vec<Wrong> {
    let mut by_pair: BTreeMap<(usize, usize), Vec<(f64, &String)>> = BTreeMap::new();
    for ((id, &t), p) in ids.iter().zip(truth).zip(proba) {
        let predicted = graft_core::numeric::argmax(p);
        if predicted != t {
            by_pair.entry((t, predicted)).or_default().push((p[predicted], id));
        }
    }
    let mut pairs: Vec<_> = by_pair.into_iter().collect();
    pairs.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let mut out = Vec::new();
    for ((t, p), mut rows) in pairs.into_iter().take(PAIRS) {
        rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        out.extend(rows.into_iter().take(PER_PAIR).map(|(confidence, id)| Wrong {
            id: id.clone(),
            truth: labels[t].clone(),
            predicted: labels[p].clone(),
            confidence,
            text: None,
            thumbnail: None,
        }));
    }
    out
}

/// Fills in each row's text, or its image's thumbnail, from `data` (a preprocess split file:
/// `id` and `text`, or `id` and the image's path or bytes), read batch by batch and keeping
/// only the wanted rows. An image that cannot be read any more gets no thumbnail.
pub fn attach_rows(wrong: &mut [Wrong], data: &Path) -> graft_core::Result<()> {
    let mut wanted: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, w) in wrong.iter().enumerate() {
        wanted.entry(w.id.clone()).or_default().push(i);
    }
    let mut reader = ArtifactReader::open(data)?;
    let root = reader.provenance().images.as_ref().map(|i| i.root.clone());
    while let Some(batch) = reader.next_batch()? {
        let Some(ids) =
            batch.column_by_name(graft_core::columns::ID).and_then(|c| c.as_any().downcast_ref::<StringArray>())
        else {
            return Ok(());
        };
        let texts =
            batch.column_by_name(graft_core::columns::TEXT).and_then(|c| c.as_any().downcast_ref::<StringArray>());
        let images = graft_core::columns::ImageRefs::of(&batch, data).ok();
        for r in 0..batch.num_rows() {
            let Some(rows) = wanted.get(ids.value(r)) else { continue };
            if let Some(texts) = texts {
                let text = texts.value(r);
                let shown = match text.char_indices().nth(TEXT_CHARS) {
                    Some((cut, _)) => format!("{}…", &text[..cut]),
                    None => text.to_owned(),
                };
                rows.iter().for_each(|&i| wrong[i].text = Some(shown.clone()));
            } else if let (Some(images), Some(root)) = (&images, &root)
                && rows.iter().all(|&i| wrong[i].thumbnail.is_none())
            {
                let thumb = match images.source(r) {
                    Ok(graft_core::columns::ImageRef::File(p)) => {
                        graft_imaging::read_file(&root.join(p)).ok().and_then(|b| thumbnail(&b))
                    }
                    Ok(graft_core::columns::ImageRef::Bytes(b)) => thumbnail(b),
                    Err(_) => None,
                };
                rows.iter().for_each(|&i| wrong[i].thumbnail = thumb.clone());
            }
        }
    }
    Ok(())
}

/// Image bytes as a PNG data URI, shorter side [`THUMBNAIL_SIDE`] pixels.
pub fn thumbnail(bytes: &[u8]) -> Option<String> {
    let png = graft_imaging::thumbnail(bytes, THUMBNAIL_SIDE).ok()?;
    Some(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png)))
}

/// Precision (undefined when nothing is predicted positive), recall and F1 of predicting
/// the positive class when its probability is at least the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AtThreshold {
    pub threshold: f64,
    pub precision: Option<f64>,
    pub recall: f64,
    pub f1: f64,
    pub predicted_positive: usize,
}

pub fn at_threshold(positive: &[bool], score: &[f64], threshold: f64) -> AtThreshold {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&y, &s) in positive.iter().zip(score) {
        match (y, s >= threshold) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => {}
        }
    }
    let precision = (tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64);
    let recall = if tp + fn_ > 0 { tp as f64 / (tp + fn_) as f64 } else { 0.0 };
    let f1 = if 2 * tp + fp + fn_ > 0 { 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64 } else { 0.0 };
    AtThreshold { threshold, precision, recall, f1, predicted_positive: tp + fp }
}

/// The threshold with the highest F1 (the lowest such, between two scores where possible,
/// so it carries to new rows): one of the midpoints of consecutive distinct scores.
pub fn best_f1_threshold(positive: &[bool], score: &[f64]) -> Option<f64> {
    let mut distinct: Vec<f64> = score.iter().copied().filter(|s| s.is_finite()).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    let candidates = std::iter::once(distinct.first()? / 2.0)
        .chain(distinct.windows(2).map(|w| (w[0] + w[1]) / 2.0))
        .collect::<Vec<f64>>();
    let mut best: Option<(f64, f64)> = None;
    for t in candidates {
        let f1 = at_threshold(positive, score, t).f1;
        if best.is_none_or(|(b, _)| f1 > b) {
            best = Some((f1, t));
        }
    }
    best.map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_rows_are_the_most_confident_per_pair() {
        let ids: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let labels = vec!["neg".to_owned(), "pos".to_owned()];
        let truth = [0, 0, 1, 1, 0];
        let proba = [vec![0.2, 0.8], vec![0.4, 0.6], vec![0.9, 0.1], vec![0.3, 0.7], vec![0.1, 0.9]];
        let wrong = most_confident_wrong(&ids, &truth, &proba, &labels);
        let got: Vec<(&str, &str, f64)> =
            wrong.iter().map(|w| (w.id.as_str(), w.truth.as_str(), w.confidence)).collect();
        // neg -> pos has three errors (e 0.9, a 0.8, b 0.6), pos -> neg one (c 0.9); d is right.
        assert_eq!(got, [("e", "neg", 0.9), ("a", "neg", 0.8), ("b", "neg", 0.6), ("c", "pos", 0.9)]);
    }

    #[test]
    fn thumbnails_are_the_image_scaled_as_png() {
        // A 2 x 2 grey image: black and white on the top row, white and black below.
        let uri = thumbnail(&graft_imaging::grey_png(&[0, 255, 255, 0], 2).unwrap()).unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(uri.strip_prefix("data:image/png;base64,").unwrap())
            .unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (THUMBNAIL_SIDE, THUMBNAIL_SIDE));
        // RGB corners: black, white / white, black (the scaling blends only near the middle).
        let at = |x: usize, y: usize| buf[(y * THUMBNAIL_SIDE as usize + x) * 3];
        let last = THUMBNAIL_SIDE as usize - 1;
        assert_eq!([at(0, 0), at(last, 0), at(0, last), at(last, last)], [0, 255, 255, 0]);
        assert_eq!(thumbnail(b"not an image"), None);
    }

    #[test]
    fn thresholds_count_as_scikit_learn_does() {
        // sklearn.metrics.precision_recall_fscore_support(y, s >= 0.5, average="binary")
        // gives precision 2/3, recall 2/3, F1 2/3 on these rows.
        let y = [true, false, true, true, false];
        let s = [0.9, 0.6, 0.4, 0.7, 0.2];
        let at = at_threshold(&y, &s, 0.5);
        assert_eq!((at.precision, at.recall, at.f1, at.predicted_positive), (Some(2.0 / 3.0), 2.0 / 3.0, 2.0 / 3.0, 3));
        assert_eq!(at_threshold(&y, &s, 0.95).precision, None);
        // Between 0.2 and 0.4: precision 3/4, recall 1, F1 6/7, the best.
        assert!((best_f1_threshold(&y, &s).unwrap() - 0.3).abs() < 1e-12);
    }
}
