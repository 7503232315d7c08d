//! `scripts/import_encoder.py` on tiny Hugging Face folders of each architecture (BERT,
//! RoBERTa, DistilBERT, MPNet), run by the pinned Python in `.graft/onnx-check-venv`: graft-backbone
//! on the imported spec gives the features numpy computed for the fixture (pooling and
//! normalisation taken from the sentence-transformers modules), and a folder it cannot use is
//! refused naming the file or tensor.

use std::path::{Path, PathBuf};

use graft_e2e::*;
use serde_json::Value;

#[test]
fn each_architecture_imports_and_gives_numpys_features() {
    for arch in ["bert", "roberta", "distilbert", "mpnet"] {
        let dir = tempfile::tempdir().unwrap();
        let d = |n: &str| dir.path().join(n);
        let out = import_encoder(&fixture(&format!("tiny-encoders/{arch}")), dir.path(), arch);
        assert!(out.status.success(), "{arch}: {}", String::from_utf8_lossy(&out.stderr));
        let spec = d(&format!("{arch}.yaml"));
        let text = std::fs::read_to_string(&spec).unwrap();
        // The pooling and normalisation come from the folder's sentence-transformers modules.
        let (pooling, normalize) = match arch {
            "bert" | "mpnet" => ("mean", "true"),
            "roberta" => ("cls", "false"),
            _ => ("max", "false"),
        };
        assert!(
            text.contains(&format!("pooling: {pooling}\n")) && text.contains(&format!("normalize: {normalize}\n")),
            "{text}"
        );
        // The fixture's features were computed with texts truncated at 12 tokens.
        let reviews = fixture("tiny/reviews.csv");
        let data = d("data");
        ok(
            "graft-preprocess",
            &[
                "--input",
                s(&reviews),
                "--spec",
                s(&spec),
                "--out",
                s(&data),
                "--id-column",
                "id",
                "--max-length",
                "12",
                "-q",
            ],
        );
        ok("graft-backbone", &["--spec", s(&spec), "--input", s(&data), "--out", s(&d("features")), "-q"]);
        let expected: Value = serde_json::from_slice(
            &std::fs::read(fixture(&format!("tiny-encoders/{arch}/expected_features.json"))).unwrap(),
        )
        .unwrap();
        let mut rows = 0;
        for split in ["train", "val", "test"] {
            for (id, (_, got)) in read_features(&d("features").join(format!("{split}.arrow"))).1 {
                let want: Vec<f64> = serde_json::from_value(expected[&id].clone()).unwrap();
                assert_eq!(got.len(), want.len());
                let diff = got.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0f64, f64::max);
                assert!(diff < 1e-4, "{arch}, row {id}: differs from numpy by {diff}");
                rows += 1;
            }
        }
        assert_eq!(rows, expected.as_object().unwrap().len(), "{arch}: every row has features");
    }
}

/// A copy of the tiny BERT folder with `edit` applied.
fn broken(dir: &Path, edit: impl FnOnce(&Path)) -> PathBuf {
    let src = fixture("tiny-encoders/bert");
    let copy = dir.join("model");
    std::fs::create_dir_all(copy.join("1_Pooling")).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json"] {
        std::fs::copy(src.join(f), copy.join(f)).unwrap();
    }
    edit(&copy);
    copy
}

fn refused(model_dir: &Path, dir: &Path) -> String {
    let out = import_encoder(model_dir, dir, "broken");
    let message = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(!dir.join("broken.yaml").exists() && !dir.join("broken/model.onnx").exists());
    message
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

/// What is broken, how, and what the message must name.
type Case = (&'static str, Box<dyn FnOnce(&Path)>, Vec<&'static str>);

#[test]
fn a_folder_it_cannot_use_is_refused_naming_the_file_or_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Case> = vec![
        (
            "no config",
            Box::new(|m| std::fs::remove_file(m.join("config.json")).unwrap()),
            vec!["config.json", "not found"],
        ),
        (
            "no weights",
            Box::new(|m| std::fs::remove_file(m.join("model.safetensors")).unwrap()),
            vec!["model.safetensors", "not found"],
        ),
        (
            "a config that is not a JSON object",
            Box::new(|m| std::fs::write(m.join("config.json"), "[1, 2]").unwrap()),
            vec!["config.json", "expected a JSON object"],
        ),
        (
            "a config without the layer count",
            Box::new(|m| edit_json(&m.join("config.json"), |c| c["num_hidden_layers"] = "two".into())),
            vec!["config.json", "num_hidden_layers must be positive integers"],
        ),
        (
            "unknown architecture",
            Box::new(|m| edit_json(&m.join("config.json"), |c| c["model_type"] = "gpt2".into())),
            vec!["config.json", "model_type `gpt2`"],
        ),
        (
            "shapes that do not match the config",
            Box::new(|m| edit_json(&m.join("config.json"), |c| c["intermediate_size"] = 48.into())),
            vec!["model.safetensors", "encoder.layer.0.intermediate.dense.weight", "[48, 16]"],
        ),
        (
            "a tokenizer with more ids than embeddings",
            Box::new(|m| edit_json(&m.join("tokenizer.json"), |t| t["model"]["vocab"]["[EXTRA]"] = 999.into())),
            vec!["tokenizer.json", "1000 token ids", "embeddings.word_embeddings.weight"],
        ),
    ];
    for (what, edit, needles) in cases {
        let case = tempfile::tempdir_in(dir.path()).unwrap();
        let model = broken(case.path(), edit);
        let message = refused(&model, case.path());
        for needle in needles {
            assert!(message.contains(needle), "{what}: `{needle}` not in {message}");
        }
    }
}
