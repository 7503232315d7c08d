//! Train, bundle, score: the bundle travels, refuses tampering, and its predictions equal
//! evaluate's on the same rows; every input row comes out once, in order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, Float64Array, RecordBatch, StringArray, UInt64Array};
use graft_core::artifact::ArtifactReader;
use graft_e2e::*;
use serde_json::Value;

/// Trains on the fixture reviews (ids from their `id` column), evaluates on test and
/// bundles everything into `dir/model`.
fn bundled(dir: &Path) -> PathBuf {
    features(dir, &[]);
    let (data, feats, head, eval, model) =
        (dir.join("data"), dir.join("features"), dir.join("head"), dir.join("eval"), dir.join("model"));
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--c", "0.1,1", "-q"]);
    ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&eval), "-q"]);
    let spec = fixture("tiny/tiny.yaml");
    ok(
        "graft-evaluate",
        &["bundle", "--head", s(&head), "--spec", s(&spec), "--data", s(&data), "--eval", s(&eval), "--out", s(&model)],
    );
    model
}

/// rows, backbone and predict for `input` into `dir/NAME.EXT`; extra flags for `rows`.
fn score(bundle: &Path, input: &Path, dir: &Path, out: &str, rows_flags: &[&str]) -> PathBuf {
    let (rows, feats, dest) = (dir.join("rows"), dir.join("feats"), dir.join(out));
    let mut args = vec!["rows", "--bundle", s(bundle), "--input", s(input), "--out", s(&rows), "-q"];
    args.extend_from_slice(rows_flags);
    ok("graft-preprocess", &args);
    ok("graft-backbone", &["--spec", s(bundle), "--input", s(&rows), "--out", s(&feats), "-q"]);
    let predict = ["predict", "--bundle", s(bundle), "--rows", s(&rows), "--features", s(&feats), "--out", s(&dest)];
    ok("graft-evaluate", &predict);
    dest
}

/// One predictions row: (row, id, label, pred, probabilities, reason, carried columns).
type Row = (u64, String, Option<String>, Option<String>, Vec<Option<f64>>, Option<String>, Vec<Option<String>>);

fn rows_of(batch: &RecordBatch, rows: &mut Vec<Row>) {
    let text = |name: &str| batch.column_by_name(name).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
    let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
    let positions = batch.column_by_name("row").unwrap().as_any().downcast_ref::<UInt64Array>().unwrap().clone();
    let (ids, labels, preds, reasons) = (text("id"), text("label"), text("pred"), text("reason"));
    let probs: Vec<Float64Array> = batch
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name().starts_with("prob_"))
        .map(|f| batch.column_by_name(f.name()).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone())
        .collect();
    let carried: Vec<StringArray> =
        batch.schema().fields().iter().skip_while(|f| f.name() != "reason").skip(1).map(|f| text(f.name())).collect();
    for i in 0..batch.num_rows() {
        rows.push((
            positions.value(i),
            ids.value(i).to_owned(),
            opt(&labels, i),
            opt(&preds, i),
            probs.iter().map(|p| p.is_valid(i).then(|| p.value(i))).collect(),
            opt(&reasons, i),
            carried.iter().map(|c| opt(c, i)).collect(),
        ));
    }
}

fn read_parquet(path: &Path) -> Vec<Row> {
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        rows_of(&batch.unwrap(), &mut rows);
    }
    rows
}

fn read_arrow(path: &Path) -> Vec<Row> {
    let mut r = ArtifactReader::open(path).unwrap();
    let mut rows = Vec::new();
    while let Some(batch) = r.next_batch().unwrap() {
        rows_of(&batch, &mut rows);
    }
    rows
}

fn write_csv(path: &Path, header: &[&str], rows: &[Vec<&str>]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(header).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
}

#[test]
fn predictions_on_the_test_split_equal_evaluate_exactly_and_the_bundle_travels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = bundled(d);
    // The test split's rows, as a labelled table in the split's order.
    let (_, tokens) = read_tokens(&d.join("data/test.arrow"));
    let mut r = ArtifactReader::open(&d.join("data/test.arrow")).unwrap();
    let mut table = Vec::new();
    while let Some(b) = r.next_batch().unwrap() {
        let col = |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let (ids, texts, labels) = (col("id"), col("text"), col("label"));
        for i in 0..b.num_rows() {
            table.push(vec![ids.value(i).to_owned(), texts.value(i).to_owned(), labels.value(i).to_owned()]);
        }
    }
    assert_eq!(table.len(), tokens.len());
    let input = d.join("test.csv");
    let refs: Vec<Vec<&str>> = table.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    write_csv(&input, &["id", "text", "label"], &refs);

    // Moved to another folder, the bundle still works.
    let moved = d.join("elsewhere/model");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&model, &moved).unwrap();
    let out = score(&moved, &input, &d.join("scored"), "p.arrow", &["--id-column", "id"]);
    let scored = read_arrow(&out);

    let mut ev = ArtifactReader::open(&d.join("eval/predictions.arrow")).unwrap();
    let prov = ev.provenance().clone();
    let mut expected: BTreeMap<String, (String, String, Vec<f64>)> = BTreeMap::new();
    while let Some(b) = ev.next_batch().unwrap() {
        let col = |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let (ids, labels, preds) = (col("id"), col("label"), col("pred"));
        let probs: Vec<Float64Array> = prov
            .labels
            .iter()
            .map(|l| {
                b.column_by_name(&format!("prob_{l}")).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone()
            })
            .collect();
        for i in 0..b.num_rows() {
            let p = probs.iter().map(|c| c.value(i)).collect();
            expected.insert(ids.value(i).to_owned(), (labels.value(i).to_owned(), preds.value(i).to_owned(), p));
        }
    }
    assert_eq!(scored.len(), expected.len());
    for (k, (row, id, label, pred, probs, reason, _)) in scored.iter().enumerate() {
        assert_eq!(*row, k as u64, "input order");
        assert_eq!(id, &table[k][0]);
        let (want_label, want_pred, want_probs) = &expected[id];
        assert_eq!(label.as_ref(), Some(want_label), "the label column is carried through");
        assert_eq!(pred.as_ref(), Some(want_pred), "{id}");
        let got: Vec<f64> = probs.iter().map(|p| p.unwrap()).collect();
        assert_eq!(&got, want_probs, "{id}: bit-identical probabilities");
        assert!(reason.is_none());
    }
    let drift: Value = serde_json::from_slice(&std::fs::read(d.join("scored/p.drift.json")).unwrap()).unwrap();
    let metrics: Value = serde_json::from_slice(&std::fs::read(d.join("eval/metrics.json")).unwrap()).unwrap();
    assert_eq!(drift["labelled"]["rows"].as_u64(), Some(table.len() as u64));
    assert_eq!(
        drift["labelled"]["accuracy"], metrics["metrics"]["accuracy"],
        "labelled rows are scored as evaluate does"
    );
}

#[test]
fn labels_the_model_does_not_know_are_left_out_of_the_accuracy_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = bundled(d);
    let input = d.join("labelled.csv");
    let rows = [
        ["a", "a charming sharp movie", "pos"],
        ["b", "dull and far too long", "neg"],
        ["c", "a warm and lovely film", "pos"],
        ["d", "tedious awful mess", "pos"],
        ["e", "a film", "neutral"],
        ["f", "a lovely film", "Pos"],
        ["g", "a dull film", "neutral"],
        ["h", "a lovely warm film", " pos "],
        ["i", "a film", "  "],
    ];
    write_csv(&input, &["id", "text", "label"], &rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>());
    let out = score(&model, &input, &d.join("scored"), "p.arrow", &["--id-column", "id"]);
    let scored = read_arrow(&out);
    // Labels are read as training reads them: ` pos ` is `pos`, a blank one is no label.
    assert_eq!((scored[7].2.as_deref(), scored[8].2.as_deref()), (Some("pos"), None));
    let known: Vec<&Row> = scored.iter().filter(|r| matches!(r.2.as_deref(), Some("pos" | "neg"))).collect();
    assert_eq!(known.len(), 5);
    let right = known.iter().filter(|r| r.2 == r.3).count();
    let drift: Value = serde_json::from_slice(&std::fs::read(d.join("scored/p.drift.json")).unwrap()).unwrap();
    assert_eq!(drift["labelled"]["rows"], 5, "{drift}");
    assert!((drift["labelled"]["accuracy"].as_f64().unwrap() - right as f64 / 5.0).abs() < 1e-12, "{drift}");
    assert_eq!(drift["unknown_labels"], serde_json::json!({"rows": 3, "examples": ["Pos", "neutral"]}));
    let warnings = drift["warnings"].to_string();
    assert!(warnings.contains("3 labelled rows have a label that is none of the model's classes (`Pos`, `neutral`; the classes are `neg`, `pos`)"), "{warnings}");
    assert_eq!(scored.len(), 9, "every row is still scored");
}

#[test]
fn a_night_with_no_rows_or_none_scorable_gives_empty_predictions_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = bundled(d);
    write_csv(&d.join("none.csv"), &["id", "text"], &[]);
    write_csv(&d.join("blank.csv"), &["id", "text"], &[vec!["a", ""], vec!["b", "   "]]);
    let predict = |input: &str, out: &str| {
        let (input, out) = (d.join(input), d.join(out));
        ok("graft", &["predict", "--bundle", s(&model), "--input", s(&input), "--id-column", "id", "--out", s(&out)]);
        let drift: Value = serde_json::from_slice(&std::fs::read(out.with_extension("drift.json")).unwrap()).unwrap();
        (std::fs::read_to_string(&out).unwrap(), drift)
    };
    let (csv, drift) = predict("none.csv", "none/p.csv");
    assert_eq!(csv, "row,id,label,pred,top_probability,prob_neg,prob_pos,reason\n", "the header alone");
    assert_eq!((&drift["rows_read"], &drift["scored"]), (&Value::from(0), &Value::from(0)));
    assert_eq!(drift["warnings"], serde_json::json!(["no rows to score"]), "no class-share warnings");
    let (csv, drift) = predict("blank.csv", "blank/p.csv");
    assert_eq!(csv.lines().skip(1).collect::<Vec<_>>(), ["0,a,,,,,,empty text", "1,b,,,,,,empty text"]);
    assert_eq!(drift["rejected"]["empty text"], 2, "{drift}");

    // No rows as an empty file: a JSONL night with none has no bytes, and a CSV may lack its
    // header. Read as no rows, with the columns asked for kept.
    std::fs::write(d.join("none.jsonl"), b"").unwrap();
    std::fs::write(d.join("empty.csv"), b"\xEF\xBB\xBF\r\n \r\n").unwrap();
    for input in ["none.jsonl", "empty.csv"] {
        let (input, out) = (d.join(input), d.join(format!("scored-{input}/p.csv")));
        let args =
            ["predict", "--bundle", s(&model), "--input", s(&input), "--id-column", "id", "--keep", "text,channel"];
        ok("graft", &[&args[..], &["--out", s(&out)]].concat());
        let csv = std::fs::read_to_string(&out).unwrap();
        assert_eq!(csv, "row,id,label,pred,top_probability,prob_neg,prob_pos,reason,text,channel\n", "{input:?}");
    }
    // A header of no names above rows is not an empty file.
    std::fs::write(d.join("nameless.csv"), b",\na,good film\n").unwrap();
    let out = d.join("nameless/p.csv");
    let err = user_error(
        "graft",
        &["predict", "--bundle", s(&model), "--input", s(&d.join("nameless.csv")), "--out", s(&out)],
    );
    assert!(err.contains("nameless.csv` has no column names: its first line, the header, is blank"), "{err}");
    assert!(!out.exists());
}

#[test]
fn every_row_comes_out_once_in_order_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = bundled(d);
    let input = d.join("new.csv");
    write_csv(
        &input,
        &["key", "text", "channel"],
        &[
            vec!["a", "charming sharp movie", "web"],
            vec!["b", "", "web"],
            vec!["c", "awful dull boring film", "app"],
            vec!["d", "<br />", "app"],
            vec!["e", "great moving film", "web"],
            vec!["", "a fine sharp film", "app"],
        ],
    );
    let flags = ["--id-column", "key", "--keep", "channel"];
    let parquet = read_parquet(&score(&model, &input, &d.join("s1"), "p.parquet", &flags));
    let arrow = read_arrow(&score(&model, &input, &d.join("s2"), "p.arrow", &flags));
    assert_eq!(parquet, arrow, "Parquet and Arrow hold the same rows");
    let ids: Vec<&str> = parquet.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e", ""]);
    let reasons: Vec<Option<&str>> = parquet.iter().map(|r| r.5.as_deref()).collect();
    assert_eq!(reasons, [None, Some("empty text"), None, Some("empty text"), None, Some("no id")]);
    assert!(parquet.iter().all(|r| r.3.is_some() == r.5.is_none()), "a prediction or a reason, never both");
    assert_eq!(parquet[2].6, [Some("app".to_owned())], "carried column");
    for r in parquet.iter().filter(|r| r.5.is_none()) {
        let sum: f64 = r.4.iter().map(|p| p.unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-12, "{r:?}");
    }

    let csv_out = score(&model, &input, &d.join("s3"), "p.csv", &flags);
    let mut reader = csv::Reader::from_path(&csv_out).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, ["row", "id", "label", "pred", "top_probability", "prob_neg", "prob_pos", "reason", "channel"]);
    let csv_rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(csv_rows.len(), 6);
    for (c, p) in csv_rows.iter().zip(&parquet) {
        assert_eq!(&c[1], p.1);
        let prob: Option<f64> = c[5].parse().ok();
        match (prob, p.4[0]) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}"),
            (a, b) => assert_eq!(a.is_none(), b.is_none()),
        }
    }

    let jsonl = score(&model, &input, &d.join("s4"), "p.jsonl", &flags);
    let lines: Vec<Value> =
        std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[1]["reason"], "empty text");
    assert_eq!(lines[4]["id"], "e");

    let drift: Value = serde_json::from_slice(&std::fs::read(d.join("s1/p.drift.json")).unwrap()).unwrap();
    assert_eq!((drift["rows_read"].as_u64(), drift["scored"].as_u64()), (Some(6), Some(3)));
    assert_eq!(drift["rejected"], serde_json::json!({"empty text": 2, "no id": 1}), "read = scored + rejected");
    let shares: f64 = drift["classes"].as_array().unwrap().iter().map(|c| c["predicted"].as_f64().unwrap()).sum();
    assert!((shares - 1.0).abs() < 1e-12);
}

#[test]
fn graft_predict_is_the_three_stages_in_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = bundled(d);
    let input = fixture("tiny/reviews.csv");
    let staged = read_arrow(&score(&model, &input, &d.join("staged"), "p.arrow", &["--id-column", "id"]));
    let out = d.join("one/p.arrow");
    ok("graft", &["predict", "--bundle", s(&model), "--input", s(&input), "--id-column", "id", "--out", s(&out)]);
    assert_eq!(read_arrow(&out), staged);
    assert_eq!(files_in(&d.join("one")).len(), 2, "predictions and drift only: {:?}", files_in(&d.join("one")));

    // The same rows as tab-separated values score the same.
    let mut reader = csv::Reader::from_path(&input).unwrap();
    let mut tsv = csv::WriterBuilder::new().delimiter(b'\t').from_path(d.join("reviews.tsv")).unwrap();
    tsv.write_record(reader.headers().unwrap()).unwrap();
    for record in reader.records() {
        let record = record.unwrap();
        assert!(record.iter().all(|f| !f.contains(['\t', '"', '\n'])), "a field TSV holds as it is: {record:?}");
        tsv.write_record(&record).unwrap();
    }
    drop(tsv);
    let out = d.join("tsv/p.arrow");
    let input = d.join("reviews.tsv");
    ok("graft", &["predict", "--bundle", s(&model), "--input", s(&input), "--id-column", "id", "--out", s(&out)]);
    assert_eq!(read_arrow(&out), staged);

    // An output named for no format, or for another than --format, is refused before any work.
    let err =
        user_error("graft", &["predict", "--bundle", s(&model), "--input", s(&input), "--out", s(&d.join("x/p.tsv"))]);
    assert!(err.contains("p.tsv`: cannot tell the output format from `.tsv`"), "{err}");
    assert!(files_in(&d.join("x")).is_empty(), "{:?}", files_in(&d.join("x")));
    let (rows, feats) = (d.join("staged/rows"), d.join("staged/feats"));
    let predict = ["predict", "--bundle", s(&model), "--rows", s(&rows), "--features", s(&feats)];
    let err = user_error(
        "graft-evaluate",
        &[&predict[..], &["--out", s(&d.join("y/p.csv")), "--format", "parquet"]].concat(),
    );
    assert!(err.contains("`--format parquet` was given, but `.csv` names csv output"), "{err}");
    assert!(files_in(&d.join("y")).is_empty());

    // Predictions written over the rows they score would lose them.
    let before = std::fs::read(&input).unwrap();
    let same = d.join(".").join("reviews.tsv");
    let err = user_error(
        "graft",
        &["predict", "--bundle", s(&model), "--input", s(&input), "--out", s(&same), "--format", "csv"],
    );
    assert!(err.contains("reviews.tsv` is the input"), "{err}");
    assert_eq!(std::fs::read(&input).unwrap(), before);

    // A pipe (as `/dev/stdout` is when piped) cannot be renamed over: refused before any work,
    // and left a pipe. A link is written through: it stays, and its file holds the predictions.
    let pipe = d.join("pipe.arrow");
    assert!(std::process::Command::new("mkfifo").arg(&pipe).status().unwrap().success());
    let err = user_error("graft", &["predict", "--bundle", s(&model), "--input", s(&input), "--out", s(&pipe)]);
    assert!(err.contains("pipe.arrow` is not a regular file (a device, a pipe or a folder)"), "{err}");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&std::fs::metadata(&pipe).unwrap().file_type()));
    let err = user_error("graft", &["predict", "--bundle", s(&model), "--input", s(&input), "--out", "-"]);
    assert!(err.contains("`-` is not a regular file"), "{err}");
    let (link, target) = (d.join("latest.arrow"), d.join("nightly/2026-11-30.arrow"));
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, b"yesterday").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    ok("graft", &["predict", "--bundle", s(&model), "--input", s(&input), "--id-column", "id", "--out", s(&link)]);
    assert!(link.is_symlink() && std::fs::read_link(&link).unwrap() == target);
    assert_eq!(read_arrow(&target), staged);
    assert!(d.join("nightly/2026-11-30.drift.json").is_file());
}

/// The tiny CNN's features of `input` (val and test fractions `fraction`), a head, its test
/// evaluation in `dir/eval`, and their bundle.
fn image_bundle(dir: &Path, input: &Path, fraction: &str) -> PathBuf {
    let (spec, data) = (fixture("tiny-images/tiny-cnn.yaml"), dir.join("data"));
    let split = ["--val-fraction", fraction, "--test-fraction", fraction, "-q"];
    ok("graft-preprocess", &[&["--input", s(input), "--spec", s(&spec), "--out", s(&data)][..], &split].concat());
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&data), "--out", s(&dir.join("features")), "-q"]);
    let (feats, head, eval, model) = (dir.join("features"), dir.join("head"), dir.join("eval"), dir.join("model"));
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--c", "1", "-q"]);
    ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&eval), "-q"]);
    let args =
        ["bundle", "--head", s(&head), "--spec", s(&spec), "--data", s(&data), "--eval", s(&eval), "--out", s(&model)];
    ok("graft-evaluate", &args);
    model
}

#[test]
fn a_folder_of_images_is_scored_as_at_training_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = fixture("tiny-images/folder");
    let (model, eval) = (image_bundle(d, &folder, "0.2"), d.join("eval"));
    let out = d.join("scored/p.arrow");
    ok("graft", &["predict", "--bundle", s(&model), "--input", s(&folder), "--out", s(&out)]);
    let scored = read_arrow(&out);
    let files: usize = ["cat", "dog"].iter().map(|c| std::fs::read_dir(folder.join(c)).unwrap().count()).sum();
    assert_eq!(scored.len(), files, "one row per image file");
    let rejected: Vec<&Row> = scored.iter().filter(|r| r.5.is_some()).collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].1.ends_with("broken.png") && rejected[0].5.as_deref() == Some("unreadable image"));
    // The test split's images get evaluate's probabilities.
    let mut ev = ArtifactReader::open(&eval.join("predictions.arrow")).unwrap();
    let mut compared = 0;
    while let Some(b) = ev.next_batch().unwrap() {
        let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let probs: Vec<Float64Array> = ["prob_cat", "prob_dog"]
            .iter()
            .map(|c| b.column_by_name(c).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone())
            .collect();
        for i in 0..b.num_rows() {
            let row = scored.iter().find(|r| r.1 == ids.value(i)).expect("the image is scored");
            assert_eq!(row.2.as_deref(), ids.value(i).split('/').next(), "the folder is the label");
            for (c, p) in probs.iter().enumerate() {
                assert!((row.4[c].unwrap() - p.value(i)).abs() < 1e-6, "{row:?}");
            }
            compared += 1;
        }
    }
    assert!(compared > 0);
}

/// `png` with its pixel data no longer a zlib stream but every CRC right (as a faulty encoder
/// writes it): the check before the split passes it, the decoder fails on it.
fn undecodable_png(png: &[u8]) -> Vec<u8> {
    let mut bytes = png.to_vec();
    let idat = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
    let len = u32::from_be_bytes(bytes[idat - 4..idat].try_into().unwrap()) as usize;
    bytes[idat + 4] ^= 0x0F; // the zlib header's compression method
    let crc = crc32fast::hash(&bytes[idat..idat + 4 + len]);
    bytes[idat + 4 + len..idat + 8 + len].copy_from_slice(&crc.to_be_bytes());
    assert!(graft_imaging::check(&bytes).is_ok() && graft_imaging::decode(&bytes).is_err());
    bytes
}

#[test]
fn an_undecodable_image_is_rejected_in_its_place_and_the_others_scored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = image_bundle(d, &fixture("tiny-images/folder"), "0.2");
    let (clean, new) = (d.join("clean"), d.join("new"));
    for folder in [&clean, &new] {
        std::fs::create_dir_all(folder).unwrap();
        for (from, to) in
            [("folder/cat/00.png", "a.png"), ("folder/dog/01.png", "c.png"), ("folder/cat/02.png", "e.png")]
        {
            std::fs::copy(fixture(&format!("tiny-images/{from}")), folder.join(to)).unwrap();
        }
    }
    // The decoder panics on one, and the other's pixel data is not a zlib stream; a truncated
    // one among them is rejected before the backbone.
    std::fs::copy(fixture("tiny-images/hostile.jpg"), new.join("b.jpg")).unwrap();
    std::fs::copy(fixture("tiny-images/folder/dog/broken.png"), new.join("ab.png")).unwrap();
    let png = std::fs::read(fixture("tiny-images/folder/dog/02.png")).unwrap();
    std::fs::write(new.join("d.png"), undecodable_png(&png)).unwrap();
    let predict = |input: &Path, name: &str, extra: &[&str]| {
        let (out, work) = (d.join(name).join("p.arrow"), d.join(name).join("work"));
        let args = ["predict", "--bundle", s(&model), "--input", s(input), "--out", s(&out), "--work", s(&work)];
        (run("graft", &[&args[..], extra].concat()), out, work)
    };
    let (done, out, work) = predict(&new, "scored", &[]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(log.contains("b.jpg cannot be decoded") && log.contains("d.png cannot be decoded"), "named: {log}");
    let scored = read_arrow(&out);
    let (_, clean_out, _) = predict(&clean, "clean", &[]);
    let reference = read_arrow(&clean_out);
    // Six rows in input order, the rejected ones in their places without a prediction.
    let ids: Vec<(u64, &str, Option<&str>)> = scored.iter().map(|r| (r.0, r.1.as_str(), r.5.as_deref())).collect();
    let undecodable = Some("undecodable image");
    assert_eq!(
        ids,
        [
            (0, "a.png", None),
            (1, "ab.png", Some("unreadable image")),
            (2, "b.jpg", undecodable),
            (3, "c.png", None),
            (4, "d.png", undecodable),
            (5, "e.png", None)
        ]
    );
    assert!(scored.iter().filter(|r| r.5.is_some()).all(|r| r.3.is_none() && r.4.iter().all(Option::is_none)));
    // The others' probabilities are those of the folder without the two.
    for row in scored.iter().filter(|r| r.5.is_none()) {
        let want = reference.iter().find(|r| r.1 == row.1).unwrap();
        assert_eq!(row.3, want.3);
        assert!(row.4.iter().zip(&want.4).all(|(a, b)| (a.unwrap() - b.unwrap()).abs() < 1e-6), "{row:?} {want:?}");
    }
    let drift: Value = serde_json::from_str(&std::fs::read_to_string(d.join("scored/p.drift.json")).unwrap()).unwrap();
    assert_eq!((&drift["rows_read"], &drift["scored"]), (&Value::from(6), &Value::from(3)), "{drift}");
    assert_eq!(drift["rejected"], serde_json::json!({"undecodable image": 2, "unreadable image": 1}), "{drift}");
    // The backbone's rejects: from another run, they are refused.
    let (rows, features, elsewhere) = (work.join("rows"), work.join("features"), d.join("x.csv"));
    assert_eq!(ArtifactReader::open(&features.join("rejects.arrow")).unwrap().provenance().rows, 2);
    let mut written = files_in(&features);
    written.sort();
    assert_eq!(written, ["rejects.arrow", "rows.arrow"], "the spilled features are gone");
    std::fs::copy(d.join("clean/work/features/rejects.arrow"), features.join("rejects.arrow")).unwrap();
    let args =
        ["predict", "--bundle", s(&model), "--rows", s(&rows), "--features", s(&features), "--out", s(&elsewhere)];
    let err = user_error("graft-evaluate", &args);
    assert!(err.contains("rejects.arrow") && err.contains("different backbone runs"), "{err}");
    std::fs::remove_file(features.join("rejects.arrow")).unwrap();
    let err = user_error("graft-evaluate", &args);
    assert!(err.contains("not the `rejects.arrow`") && err.contains("rerun graft-backbone"), "{err}");
    // In batches of two (the undecodable images in the first and the second batch), by one
    // session or by two side by side: the same rows rejected and the same features, exactly.
    let (_, whole) = read_features(&d.join("clean/work/features/rows.arrow"));
    for sessions in ["1", "2"] {
        let again = d.join(format!("sessions{sessions}"));
        let args = ["--spec", s(&model), "--input", s(&rows), "--out", s(&again), "--batch-size", "2"];
        ok("graft-backbone", &[&args[..], &["--threads", "2", "--sessions", sessions, "-q"]].concat());
        let mut reader = ArtifactReader::open(&again.join("rejects.arrow")).unwrap();
        let batch = reader.next_batch().unwrap().unwrap();
        let ids = batch.column_by_name("id").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(ids.iter().flatten().collect::<Vec<_>>(), ["b.jpg", "d.png"], "{sessions} session(s)");
        let (_, features) = read_features(&again.join("rows.arrow"));
        assert_eq!(features, whole, "{sessions} session(s)");
    }
    // A folder with no images: no rows, and no failure.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let (done, out, _) = predict(&d.join("empty"), "empty", &[]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(read_arrow(&out).is_empty());
    // With --strict the first undecodable image fails the run, named, and nothing is written.
    std::fs::remove_file(new.join("ab.png")).unwrap();
    let (failed, out, _) = predict(&new, "strict", &["--strict"]);
    let err = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{err}");
    assert!(err.contains("b.jpg cannot be decoded"), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_archive_of_images_is_scored_like_the_folder_in_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = fixture("tiny-images/folder");
    let model = image_bundle(d, &folder, "0.2");
    let score = |input: &Path, out: &str, shard: Option<&str>| {
        let out = d.join(out);
        let mut args = vec!["predict", "--bundle", s(&model), "--input", s(input), "--out", s(&out)];
        if let Some(shard) = shard {
            args.extend(["--shard", shard]);
        }
        ok("graft", &args);
        read_arrow(&out)
    };
    let by_folder = score(&folder, "folder/p.arrow", None);
    for archive in ["folder.zip", "folder.tar.gz"] {
        // Three shards of the archive, joined, are the folder's rows: same ids, order,
        // predictions and the broken image rejected.
        let mut joined = Vec::new();
        for i in 0..3 {
            joined.extend(score(
                &fixture(&format!("tiny-images/{archive}")),
                &format!("{archive}{i}/p.arrow"),
                Some(&format!("{i}/3")),
            ));
        }
        assert_eq!(joined.len(), by_folder.len(), "{archive}");
        for (a, b) in joined.iter().zip(&by_folder) {
            assert_eq!((a.0, &a.1, &a.2, &a.3, &a.5), (b.0, &b.1, &b.2, &b.3, &b.5), "{archive}");
            assert!(a.4.iter().zip(&b.4).all(|(x, y)| (x.unwrap_or(0.0) - y.unwrap_or(0.0)).abs() < 1e-6), "{a:?}");
        }
    }
}

#[test]
fn pixel_rows_are_scored_as_at_training_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pixels = fixture("tiny-images/pixels.csv");
    let model = image_bundle(d, &pixels, "0.25");
    let out = d.join("scored/p.arrow");
    ok("graft", &["predict", "--bundle", s(&model), "--input", s(&pixels), "--out", s(&out)]);
    let scored = read_arrow(&out);
    assert_eq!(scored.len(), 12, "one row per pixel row");
    for (k, r) in scored.iter().enumerate() {
        assert_eq!((r.0, r.1.as_str(), r.5.as_deref()), (k as u64, k.to_string().as_str(), None), "{r:?}");
        assert!(r.2.is_some(), "the label column is carried");
        let sum: f64 = r.4.iter().map(|p| p.unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }
    let drift: Value = serde_json::from_slice(&std::fs::read(d.join("scored/p.drift.json")).unwrap()).unwrap();
    assert_eq!(drift["labelled"]["rows"], 12);
    // Named by an id column, a row whose id is blank is rejected in its place, not given
    // its row number as an id (which another row's id could be).
    let keyed = d.join("keyed.csv");
    let lines: Vec<String> = std::fs::read_to_string(&pixels).unwrap().lines().map(str::to_owned).collect();
    let mut csv = format!("key,{}\n", lines[0]);
    for (k, line) in lines[1..].iter().enumerate() {
        let key = if k == 4 { " ".to_owned() } else { format!("p{k}") };
        csv.push_str(&format!("{key},{line}\n"));
    }
    std::fs::write(&keyed, csv).unwrap();
    let out = d.join("keyed/p.arrow");
    ok("graft", &["predict", "--bundle", s(&model), "--input", s(&keyed), "--id-column", "key", "--out", s(&out)]);
    let scored = read_arrow(&out);
    let ids: Vec<(&str, Option<&str>)> = scored.iter().map(|r| (r.1.as_str(), r.5.as_deref())).collect();
    let want: Vec<(String, Option<&str>)> =
        (0..12).map(|k| if k == 4 { (String::new(), Some("no id")) } else { (format!("p{k}"), None) }).collect();
    assert_eq!(ids, want.iter().map(|(id, r)| (id.as_str(), *r)).collect::<Vec<_>>());
    assert!(scored[4].3.is_none(), "no prediction for a row without an id");
    // Text given to an image model, and images given to a text model: refused, nothing written.
    let reviews = fixture("tiny/reviews.csv");
    let bad = d.join("bad/p.arrow");
    let err = user_error("graft", &["predict", "--bundle", s(&model), "--input", s(&reviews), "--out", s(&bad)]);
    assert!(err.contains("reviews.csv") && err.contains("do not make a square image"), "{err}");
    let text_model = bundled(&d.join("text"));
    let folder = fixture("tiny-images/folder");
    let err = user_error("graft", &["predict", "--bundle", s(&text_model), "--input", s(&folder), "--out", s(&bad)]);
    assert!(err.contains("folder") && err.contains("cannot tell the format"), "{err}");
    assert!(
        !bad.exists() && files_in(&d.join("bad")).iter().all(|f| !f.starts_with("p.")),
        "{:?}",
        files_in(&d.join("bad"))
    );
}

#[test]
fn shards_concatenate_to_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = bundled(d);
    let input = fixture("tiny/reviews.csv");
    let whole = read_arrow(&score(&model, &input, &d.join("whole"), "p.arrow", &["--id-column", "id"]));
    let mut joined = Vec::new();
    for i in 0..3 {
        let shard = format!("{i}/3");
        let out =
            score(&model, &input, &d.join(format!("shard{i}")), "p.arrow", &["--id-column", "id", "--shard", &shard]);
        joined.extend(read_arrow(&out));
    }
    assert_eq!(joined.len(), whole.len());
    for (a, b) in joined.iter().zip(&whole) {
        assert_eq!((a.0, &a.1, &a.3, &a.5), (b.0, &b.1, &b.3, &b.5), "same row, id, prediction and reason");
        for (x, y) in a.4.iter().zip(&b.4) {
            assert!((x.unwrap_or(0.0) - y.unwrap_or(0.0)).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn tampered_incomplete_or_foreign_bundles_and_bad_tables_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = bundled(d);
    let input = fixture("tiny/reviews.csv");
    let rows_out = d.join("rows");
    let rows = |bundle: &Path, extra: &[&str]| {
        let mut args = vec!["rows", "--bundle", s(bundle), "--input", s(&input), "--out", s(&rows_out)];
        args.extend_from_slice(extra);
        let err = user_error("graft-preprocess", &args);
        assert!(files_in(&rows_out).is_empty(), "nothing written: {:?}", files_in(&rows_out));
        err
    };
    let err = rows(&model, &["--keep", "nosuch"]);
    assert!(err.contains("reviews.csv") && err.contains("no column `nosuch`"), "{err}");
    let err = rows(&model, &["--strict"]);
    assert!(err.contains("row 80 (id `r900`") && err.contains("empty text"), "{err}");

    let no_text = d.join("no-text.csv");
    write_csv(&no_text, &["id", "body"], &[vec!["x", "fine"]]);
    let args = ["rows", "--bundle", s(&model), "--input", s(&no_text), "--out", s(&rows_out)];
    let err = user_error("graft-preprocess", &args);
    assert!(err.contains("no-text.csv") && err.contains("no column `text`"), "{err}");

    let tokenizer = model.join("tokenizer.json");
    let good = std::fs::read(&tokenizer).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 1;
    std::fs::write(&tokenizer, &bad).unwrap();
    let err = rows(&model, &[]);
    assert!(err.contains("tokenizer.json") && err.contains("mixes files of two runs or was altered"), "{err}");
    std::fs::remove_file(&tokenizer).unwrap();
    let err = rows(&model, &[]);
    assert!(err.contains("manifest.json") && err.contains("lists `tokenizer.json`, which is missing"), "{err}");
    std::fs::write(&tokenizer, &good).unwrap();

    // A bundle of another format version, consistent with its manifest.
    let info_path = model.join("bundle.json");
    let mut info: Value = serde_json::from_slice(&std::fs::read(&info_path).unwrap()).unwrap();
    info["format"] = "graft-bundle/0".into();
    let bytes = serde_json::to_vec_pretty(&info).unwrap();
    std::fs::write(&info_path, &bytes).unwrap();
    let manifest_path = model.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"]["bundle.json"] = blake3::hash(&bytes).to_hex().to_string().into();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let err = rows(&model, &[]);
    assert!(err.contains("bundle.json") && err.contains("format `graft-bundle/0`"), "{err}");
}

#[test]
fn a_bundle_is_made_only_from_one_head_its_data_and_its_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    bundled(d);
    let (data, feats, head, eval) = (d.join("data"), d.join("features"), d.join("head"), d.join("eval"));
    let spec = fixture("tiny/tiny.yaml");
    let bundle = |head: &Path, data: &Path, eval: &Path, out: &Path| {
        let args =
            ["bundle", "--head", s(head), "--spec", s(&spec), "--data", s(data), "--eval", s(eval), "--out", s(out)];
        user_error("graft-evaluate", &args)
    };
    let out = d.join("out");
    // Another head on the same features: the evaluation describes the first.
    let other = d.join("other-head");
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&other), "--c", "10", "-q"]);
    let err = bundle(&other, &data, &eval, &out);
    assert!(err.contains("is not an evaluation of head") && err.contains("other-head"), "{err}");
    // Data whose labels are not the head's.
    let relabelled = d.join("relabelled.csv");
    let csv = std::fs::read_to_string(fixture("tiny/reviews.csv")).unwrap();
    std::fs::write(&relabelled, csv.replace(",pos,", ",good,").replace(",neg,", ",bad,")).unwrap();
    let other_data = d.join("other-data");
    ok("graft-preprocess", &["--input", s(&relabelled), "--spec", s(&spec), "--out", s(&other_data), "-q"]);
    let err = bundle(&head, &other_data, &eval, &out);
    assert!(err.contains("has labels [\"bad\", \"good\"]") && err.contains("not the data it was trained on"), "{err}");
    assert!(!out.exists());
    // Data with the head's labels, split another way (and read with another maximum length).
    let resplit = d.join("resplit");
    let reviews = fixture("tiny/reviews.csv");
    let args = ["--input", s(&reviews), "--spec", s(&spec), "--id-column", "id"];
    ok("graft-preprocess", &[&args[..], &["--seed", "7", "--max-length", "8", "--out", s(&resplit), "-q"]].concat());
    let err = bundle(&head, &resplit, &eval, &out);
    assert!(err.contains("resplit/train.arrow` is not the split head `") && err.contains("was trained on"), "{err}");
    assert!(!out.exists());
    // Into the head's own folder, however spelled: refused, the head untouched.
    let before = std::fs::read(head.join("head.json")).unwrap();
    let err = bundle(&head, &data, &eval, &d.join("eval/../head"));
    assert!(err.contains("is `--head ") && err.contains("choose another folder"), "{err}");
    // Into the folder holding the head: the bundle's `head/` would be the head itself.
    let err = bundle(&head, &data, &eval, d);
    assert!(err.contains("its `head/` would be head"), "{err}");
    assert_eq!(std::fs::read(head.join("head.json")).unwrap(), before);
    let mut files = files_in(&head);
    files.sort();
    assert_eq!(files, ["head.json", "head.safetensors", "manifest.json"]);
}

#[test]
fn a_scoring_pipeline_reruns_when_the_bundle_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = bundled(d);
    let input = fixture("tiny/reviews.csv");
    let yaml = format!(
        "version: 1\nstages:\n  rows:\n    cmd: graft-preprocess\n    subcommand: rows\n    args: {{bundle: '{b}', input: '{i}', id_column: id, out: out/rows}}\n    deps: ['{b}/manifest.json']\n    outs: [out/rows]\n  backbone:\n    cmd: graft-backbone\n    args: {{spec: '{b}', input: out/rows, out: out/features}}\n    deps: [out/rows]\n    outs: [out/features]\n  predict:\n    cmd: graft-evaluate\n    subcommand: predict\n    args: {{bundle: '{b}', rows: out/rows, features: out/features, out: out/p.arrow}}\n    deps: ['{b}/manifest.json', out/features]\n    outs: [out/p.arrow]\n",
        b = s(&model),
        i = s(&input)
    );
    let pipeline = d.join("score.yaml");
    std::fs::write(&pipeline, yaml).unwrap();
    ok("graft", &["run", s(&pipeline)]);
    let direct = read_arrow(&score(&model, &input, &d.join("direct"), "p.arrow", &["--id-column", "id"]));
    assert_eq!(read_arrow(&d.join("out/p.arrow")), direct, "graft run scores as the stages do by hand");
    let status = String::from_utf8(ok("graft", &["status", s(&pipeline)]).stdout).unwrap();
    assert!(!status.contains("stale") && !status.contains("never ran"), "{status}");
    // Retraining the bundle (another C) makes every scoring stage stale.
    let (feats, head2) = (d.join("features"), d.join("head2"));
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&head2), "--c", "10", "-q"]);
    let spec = fixture("tiny/tiny.yaml");
    let data = d.join("data");
    ok("graft-evaluate", &["bundle", "--head", s(&head2), "--spec", s(&spec), "--data", s(&data), "--out", s(&model)]);
    let status = String::from_utf8(ok("graft", &["status", s(&pipeline)]).stdout).unwrap();
    assert!(status.contains("manifest.json") && status.contains("changed"), "{status}");
    let unknown = ["run", s(&pipeline), "--set", "predict.threshold=1"];
    let err = user_error("graft", &unknown);
    assert!(err.contains("stage `predict` (graft-evaluate)") && err.contains("'--threshold'"), "{err}");
}
