//! Backbone specs (`models/*.yaml`): one file describing a pretrained model for every
//! stage that needs it. Relative paths are resolved against the spec's own folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The manifest kind of a tuned backbone's folder (model, spec, tokenizer, head), checked
/// when its spec is loaded.
pub const TUNED_KIND: &str = "tuned-backbone";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneSpec {
    /// Short name recorded in provenance, e.g. `all-minilm-l6-v2`.
    pub name: String,
    pub kind: Kind,
    /// The ONNX file.
    pub model: PathBuf,
    /// Tokenizer settings, for `kind: text`.
    pub text: Option<TextSpec>,
    /// Image transforms, for `kind: image`.
    pub image: Option<ImageSpec>,
    /// Graph input names.
    #[serde(default)]
    pub inputs: InputNames,
    /// Graph tensor whose values become features, `[batch, seq, dim]` for text.
    pub output: String,
    #[serde(default)]
    pub pooling: Pooling,
    /// L2-normalise pooled features.
    #[serde(default)]
    pub normalize: bool,
    /// Rows per inference batch this model is run with unless `--batch-size` is given; absent:
    /// graft-backbone's default for the kind. A model whose activations are quantised per
    /// batch at run time is more exact in smaller batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Text,
    Image,
}

/// How images become the model's input: RGB, the shorter side resized to `resize`, a
/// centred `size` x `size` crop, values scaled to [0, 1], then `(x - mean) / std` per
/// channel, laid out as `layout` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The graph's image input.
    pub input: String,
    /// Side of the square crop fed to the model.
    pub size: u32,
    /// Shorter side after resizing, before the crop (at least `size`).
    pub resize: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Tensor layout the model takes: `nchw` (`[batch, 3, S, S]`) or `nhwc` (`[batch, S, S, 3]`).
    #[serde(default)]
    pub layout: Layout,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// A Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Longest token sequence, special tokens included; longer texts are truncated.
    pub max_length: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputNames {
    pub input_ids: String,
    pub attention_mask: Option<String>,
    pub token_type_ids: Option<String>,
}

impl Default for InputNames {
    fn default() -> Self {
        Self {
            input_ids: "input_ids".into(),
            attention_mask: Some("attention_mask".into()),
            token_type_ids: Some("token_type_ids".into()),
        }
    }
}

/// How a tensor per row becomes one vector per row: token vectors `[batch, seq, dim]` by
/// mean, first token, max or mean and max side by side; feature maps `[batch, C, H, W]` by
/// global average pooling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mean over real (unpadded) tokens.
    #[default]
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise maximum over real tokens.
    Max,
    /// Mean and max side by side (twice the width).
    #[value(name = "mean_max")]
    MeanMax,
    /// Global average pooling of `[batch, C, H, W]` over H and W.
    Gap,
    /// None: the output already holds one vector per row (`[batch, dim]`).
    None,
}

/// How the pooled vectors of several outputs become one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Side by side: the dimensions add up.
    #[default]
    Concat,
    /// Element-wise mean: the outputs must have one dimension.
    Mean,
}

impl Combine {
    pub fn as_str(self) -> &'static str {
        match self {
            Combine::Concat => "concat",
            Combine::Mean => "mean",
        }
    }
}

impl Pooling {
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
            Pooling::MeanMax => "mean_max",
            Pooling::Gap => "gap",
            Pooling::None => "none",
        }
    }
}

impl BackboneSpec {
    /// Reads a spec and makes its paths absolute.
    pub fn load(path: &Path) -> Result<Self> {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        // A tuned backbone's folder (`graft-finetune layers`): its files are the ones listed.
        if let Some(manifest) = crate::manifest::Manifest::read_if(folder, TUNED_KIND)? {
            manifest.check_all(folder)?;
        }
        let text = fs_err::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        let mut spec: Self =
            serde_norway::from_str(&text).map_err(|source| Error::Spec { path: path.to_owned(), source })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        spec.model = dir.join(&spec.model);
        if spec.batch_size == Some(0) {
            return Err(Error::SpecValue {
                path: path.to_owned(),
                message: "`batch_size` is 0, expected at least 1".into(),
            });
        }
        match (&mut spec.kind, &mut spec.text) {
            (Kind::Text, Some(t)) => {
                t.tokenizer = dir.join(&t.tokenizer);
                if t.max_length < 2 {
                    return Err(Error::SpecValue {
                        path: path.to_owned(),
                        message: format!("`text.max_length` is {}, expected at least 2", t.max_length),
                    });
                }
            }
            (Kind::Text, None) => {
                return Err(Error::SpecValue {
                    path: path.to_owned(),
                    message: "`kind: text` needs a `text:` section (tokenizer, max_length)".into(),
                });
            }
            (Kind::Image, _) => {
                let Some(image) = &spec.image else {
                    return Err(Error::SpecValue {
                        path: path.to_owned(),
                        message: "`kind: image` needs an `image:` section (input, size, resize, mean, std)".into(),
                    });
                };
                if image.size == 0 || image.resize < image.size || image.std.iter().any(|s| *s <= 0.0) {
                    return Err(Error::SpecValue {
                        path: path.to_owned(),
                        message: format!(
                            "`image`: size {} must be positive, resize {} at least size, std {:?} positive",
                            image.size, image.resize, image.std
                        ),
                    });
                }
            }
        }
        Ok(spec)
    }

    /// The image section; every spec of kind image has one after [`load`](Self::load).
    pub fn image(&self) -> &ImageSpec {
        self.image.as_ref().expect("validated by BackboneSpec::load")
    }

    /// The text section; every spec of kind text has one after [`load`](Self::load).
    pub fn text(&self) -> &TextSpec {
        self.text.as_ref().expect("validated by BackboneSpec::load")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_against_the_spec_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.yaml");
        std::fs::write(
            &p,
            "name: m\nkind: text\nmodel: sub/model.onnx\ntext: {tokenizer: tok.json, max_length: 16}\noutput: last_hidden_state\n",
        )
        .unwrap();
        let spec = BackboneSpec::load(&p).unwrap();
        assert_eq!(spec.model, dir.path().join("sub/model.onnx"));
        assert_eq!(spec.text().tokenizer, dir.path().join("tok.json"));
        assert_eq!(spec.pooling, Pooling::Mean);
        assert_eq!(spec.inputs.input_ids, "input_ids");
    }

    #[test]
    fn a_batch_size_is_read_and_zero_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.yaml");
        let text = "name: m\nkind: text\nmodel: a.onnx\ntext: {tokenizer: t.json, max_length: 8}\noutput: o\n";
        std::fs::write(&p, format!("{text}batch_size: 8\n")).unwrap();
        assert_eq!(BackboneSpec::load(&p).unwrap().batch_size, Some(8));
        std::fs::write(&p, text).unwrap();
        assert_eq!(BackboneSpec::load(&p).unwrap().batch_size, None);
        std::fs::write(&p, format!("{text}batch_size: 0\n")).unwrap();
        let err = BackboneSpec::load(&p).unwrap_err().to_string();
        assert!(err.contains("m.yaml") && err.contains("`batch_size` is 0"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.yaml");
        std::fs::write(&p, "name: m\nkind: text\nmodel: a.onnx\nouptut: x\n").unwrap();
        let err = BackboneSpec::load(&p).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("m.yaml") && chain.contains("ouptut"), "{chain}");
    }
}
