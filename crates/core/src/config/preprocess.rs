//! `graft-preprocess`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::artifact::Task;
use crate::spec::Kind;

/// Parameters of `graft-preprocess`; the same keys are accepted on the command line
/// (`--text-column text`) and in pipeline files (`text_column: text`).
#[derive(Debug, Clone, PartialEq, Serialize, clap::Args)]
pub struct Config {
    /// Raw data: `.csv`, `.tsv`, `.jsonl`/`.ndjson` or `.parquet`; for an image backbone, a
    /// folder with a subfolder of images per class, or a CSV of grey pixel rows.
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder for `train.arrow`, `val.arrow`, `test.arrow`.
    #[arg(long)]
    pub out: PathBuf,
    /// Backbone spec (models/*.yaml) whose tokenizer is used.
    #[arg(long)]
    pub spec: PathBuf,
    /// Column holding the text.
    #[arg(long, default_value = TEXT_COLUMN)]
    pub text_column: String,
    /// `classification` (labels are class names, split stratified by class) or `regression`
    /// (labels are numbers, split at random).
    #[arg(long, value_enum, default_value = "classification")]
    pub task: Task,
    /// Column holding the class label or the regression target.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Column holding a unique row id; by default the row's 0-based index in the input.
    #[arg(long)]
    pub id_column: Option<String>,
    /// Keep only rows where COLUMN equals VALUE (`COLUMN=VALUE`; repeatable, all must hold).
    #[arg(long = "filter", value_name = "COLUMN=VALUE")]
    pub filters: Vec<String>,
    /// Fraction of each class held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Fraction of each class held out for testing.
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Seed of the stratified split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Images: the table column holding image paths (relative to the table's folder).
    #[arg(long)]
    pub path_column: Option<String>,
    /// Images: augmented views added per train image (train only; each keeps the image's id
    /// and gets a `view` number from 1; the original is view 0).
    #[arg(long, default_value_t = 0)]
    pub augment_views: usize,
    /// Images, augmentation: pad by this many pixels, then crop back at a random offset.
    #[arg(long, default_value_t = 0)]
    pub augment_pad: usize,
    /// Images, augmentation: flip horizontally with probability 1/2.
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub augment_flip: bool,
    /// Images, augmentation: rotate by a random angle within this many degrees.
    #[arg(long, default_value_t = 0.0)]
    pub augment_rotate: f32,
    /// Images, augmentation: scale brightness and contrast by random factors within 1 ± this.
    #[arg(long, default_value_t = 0.0)]
    pub augment_jitter: f32,
    /// Images: fail on an unreadable image instead of skipping and listing it.
    #[arg(long)]
    pub strict: bool,
    /// Truncate token sequences to this length instead of the spec's `text.max_length`.
    #[arg(long)]
    pub max_length: Option<usize>,
}

/// `--text-column`'s default.
pub const TEXT_COLUMN: &str = "text";

impl Config {
    /// The first flag set that a backbone of `kind` does not use (another kind's), which
    /// would otherwise be silently ignored.
    pub fn unused_by(&self, kind: Kind) -> Option<&'static str> {
        let image_only = [
            ("--path-column", self.path_column.is_some()),
            ("--augment-views", self.augment_views > 0),
            ("--augment-pad", self.augment_pad > 0),
            ("--augment-flip", self.augment_flip),
            ("--augment-rotate", self.augment_rotate != 0.0),
            ("--augment-jitter", self.augment_jitter != 0.0),
            ("--strict", self.strict),
        ];
        let text_only =
            [("--max-length", self.max_length.is_some()), ("--text-column", self.text_column != TEXT_COLUMN)];
        let other_kinds = match kind {
            Kind::Text => &image_only[..],
            Kind::Image => &text_only[..],
        };
        other_kinds.iter().find(|(_, set)| *set).map(|&(flag, _)| flag)
    }
}

/// Parameters of `graft-preprocess rows`: new rows to score with a model bundle, read,
/// cleaned and tokenised as its training rows were (the columns and maximum length come
/// from the bundle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct RowsConfig {
    /// Output folder for `rows.arrow` (rows to score) and `rejects.arrow` (rows that cannot be).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    #[serde(flatten)]
    pub rows: RowSelection,
}

/// Which rows of which table to score, with which bundle; shared by `graft-preprocess rows`
/// and `graft predict`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct RowSelection {
    /// The model bundle (`graft-evaluate bundle` output).
    #[arg(long)]
    pub bundle: PathBuf,
    /// New rows: `.csv`, `.tsv`, `.jsonl`/`.ndjson` or `.parquet`, with or without a label
    /// column; for an image model, a folder of images, a table naming image files or a CSV of
    /// pixel rows.
    #[arg(long)]
    pub input: PathBuf,
    /// Column holding a unique row id, instead of the bundle's (by default the row's 0-based
    /// position, when the bundle has none).
    #[arg(long)]
    pub id_column: Option<String>,
    /// Input columns to carry into the predictions (comma-separated; `*` for all of them).
    #[arg(long, value_delimiter = ',')]
    pub keep: Vec<String>,
    /// Keep only rows where COLUMN equals VALUE (`COLUMN=VALUE`; repeatable, all must hold).
    #[arg(long = "filter", value_name = "COLUMN=VALUE")]
    pub filters: Vec<String>,
    /// Fail on the first row that cannot be scored, naming it, instead of rejecting it.
    #[arg(long)]
    pub strict: bool,
    /// Only shard I of N (`I/N`): the I-th of N contiguous blocks of rows, so the shards'
    /// predictions concatenate to the whole file's.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::artifact::Shard>,
}

impl RowSelection {
    /// The flags that give this selection to `graft-preprocess rows`.
    pub fn argv(&self) -> Vec<std::ffi::OsString> {
        let mut argv: Vec<std::ffi::OsString> =
            vec!["--bundle".into(), self.bundle.clone().into(), "--input".into(), self.input.clone().into()];
        if let Some(c) = &self.id_column {
            argv.extend(["--id-column".into(), c.into()]);
        }
        if !self.keep.is_empty() {
            argv.extend(["--keep".into(), self.keep.join(",").into()]);
        }
        for f in &self.filters {
            argv.extend(["--filter".into(), f.into()]);
        }
        if self.strict {
            argv.push("--strict".into());
        }
        if let Some(s) = self.shard {
            argv.extend(["--shard".into(), s.to_string().into()]);
        }
        argv
    }
}
