//! Reading a features file (`graft-backbone` output) into a matrix and class ids.

use std::path::Path;

use crate::artifact::{ArtifactReader, BackboneId, Provenance, Task};
use crate::columns;
use arrow::array::Array;
use ndarray::Array2;

use crate::{Error, Result};

/// One split's features, in file order.
#[derive(Debug)]
pub struct Features {
    pub ids: Vec<String>,
    /// Label text per row, as written.
    pub labels: Vec<String>,
    /// Class id per row: the label's index in `provenance.labels` (classification).
    pub classes: Vec<usize>,
    /// The label as a number (regression).
    pub targets: Vec<f64>,
    /// `[rows, dim]`, float32 as the backbone wrote them.
    pub x: Array2<f32>,
    pub provenance: Provenance,
    pub backbone: BackboneId,
}

pub fn read_features(path: &Path) -> Result<Features> {
    let mut reader = ArtifactReader::open(path)?;
    let provenance = reader.provenance().clone();
    let backbone = provenance.backbone.clone().ok_or_else(|| Error::NotFeatures { path: path.to_owned() })?;
    if let Some(shard) = provenance.shard {
        return Err(Error::Shard { path: path.to_owned(), shard: shard.to_string() });
    }
    let dim = backbone.dim;
    let (mut ids, mut labels, mut classes, mut values) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut targets = Vec::new();
    let regression = provenance.task == Task::Regression;
    while let Some(batch) = reader.next_batch()? {
        let view = columns::Features::of(&batch, dim, path)?;
        let (id, label, feats) = (view.ids, view.labels, view.list);
        for i in 0..batch.num_rows() {
            let row = ids.len();
            if id.is_null(i) || label.is_null(i) || feats.is_null(i) {
                return Err(Error::BadRow {
                    path: path.to_owned(),
                    row,
                    id: if id.is_null(i) { String::new() } else { id.value(i).into() },
                    message: "has no id, label or features (null)".into(),
                });
            }
            let (id, lab) = (id.value(i), label.value(i));
            let bad = |message: String| Error::BadRow { path: path.to_owned(), row, id: id.into(), message };
            if regression {
                match lab.trim().parse::<f64>() {
                    Ok(t) if t.is_finite() => targets.push(t),
                    _ => return Err(bad(format!("regression target `{lab}` is not a finite number"))),
                }
            } else {
                let Some(class) = provenance.labels.iter().position(|l| l == lab) else {
                    return Err(bad(format!("label `{lab}` is not in the label set {:?}", provenance.labels)));
                };
                classes.push(class);
            }
            let v = view.row(i);
            if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::BadRow {
                    path: path.to_owned(),
                    row,
                    id: id.into(),
                    message: format!("feature {j} is {}", v[j]),
                });
            }
            values.extend_from_slice(v);
            ids.push(id.to_owned());
            labels.push(lab.to_owned());
        }
    }
    let x = Array2::from_shape_vec((ids.len(), dim), values).expect("rows times dim values");
    Ok(Features { ids, labels, classes, targets, x, provenance, backbone })
}

/// Refuses `other` unless it shares `reference`'s feature space and label set.
pub fn check_compatible(
    reference: &Features,
    reference_path: &Path,
    other: &Features,
    other_path: &Path,
) -> Result<()> {
    if !reference.backbone.same_features(&other.backbone) {
        return Err(Error::FeaturesMismatch {
            path: other_path.to_owned(),
            reference: reference_path.to_owned(),
            found: other.backbone.describe(),
            expected: reference.backbone.describe(),
        });
    }
    if reference.provenance.labels != other.provenance.labels || reference.provenance.task != other.provenance.task {
        return Err(Error::LabelsMismatch {
            path: other_path.to_owned(),
            reference: reference_path.to_owned(),
            found: other.provenance.labels.clone(),
            expected: reference.provenance.labels.clone(),
        });
    }
    Ok(())
}
