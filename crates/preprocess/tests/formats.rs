//! CSV, TSV, JSONL and Parquet inputs with the same rows give the same splits and tokens.

use std::path::Path;

use arrow::array::{Array, Int32Array, ListArray, StringArray};
use graft_core::artifact::{ArtifactReader, column};
use graft_core::progress::Silent;
use polars::prelude::*;

const TEXTS: [&str; 12] = [
    "great film",
    "dull plot",
    "the cast is charming",
    "boring and flat",
    "really funny <br /> movie",
    "awful",
    "clever story",
    "weak cast",
    "best film",
    "tedious",
    "moving",
    "messy plot",
];

fn spec() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/tiny.yaml")
}

/// What to read of `input`: columns `text` and `label` (optional), the id and kept columns.
fn to_read(input: std::path::PathBuf, id: Option<&str>, extra: &[&str]) -> graft_preprocess::read::Wanted {
    graft_preprocess::read::Wanted {
        input,
        text: "text".into(),
        label: "label".into(),
        training: false,
        id: id.map(str::to_owned),
        filters: vec![],
        extra: extra.iter().map(|e| e.to_string()).collect(),
    }
}

/// A text run of `input` into `out`: the given columns, splits of `val` and `test`.
fn config(
    input: &Path,
    out: &Path,
    columns: [&str; 2],
    id: Option<&str>,
    val: f64,
    test: f64,
) -> graft_preprocess::Config {
    graft_preprocess::Config {
        input: input.to_owned(),
        out: out.to_owned(),
        spec: spec(),
        text_column: columns[0].into(),
        task: Default::default(),
        label_column: columns[1].into(),
        id_column: id.map(str::to_owned),
        filters: vec![],
        val_fraction: val,
        test_fraction: test,
        seed: 5,
        max_length: None,
        strict: false,
        path_column: None,
        augment_views: 0,
        augment_pad: 0,
        augment_flip: false,
        augment_rotate: 0.0,
        augment_jitter: 0.0,
    }
}

/// (split, id, label, token ids) of every written row.
fn rows(out: &Path) -> Vec<(String, String, String, Vec<i32>)> {
    let mut all = Vec::new();
    for split in ["train", "val", "test"] {
        let path = out.join(format!("{split}.arrow"));
        let mut r = ArtifactReader::open(&path).unwrap();
        while let Some(b) = r.next_batch().unwrap() {
            let ids = column::<StringArray>(&b, "id", &path, "").unwrap();
            let labels = column::<StringArray>(&b, "label", &path, "").unwrap();
            let tokens = column::<ListArray>(&b, "input_ids", &path, "").unwrap();
            for i in 0..b.num_rows() {
                let t = tokens.value(i);
                let t = t.as_any().downcast_ref::<Int32Array>().unwrap().values().to_vec();
                all.push((split.to_owned(), ids.value(i).to_owned(), labels.value(i).to_owned(), t));
            }
        }
    }
    all
}

fn preprocess(input: &Path, out: &Path) -> Vec<(String, String, String, Vec<i32>)> {
    let cfg = config(input, out, ["review", "sentiment"], None, 0.25, 0.25);
    let summary = graft_preprocess::run(&cfg, &Silent).unwrap();
    assert_eq!(summary.labels, ["0", "1"]);
    rows(out)
}

#[test]
fn every_format_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let labels: Vec<i64> = (0..12).map(|i| (i + 1) % 2).collect();
    let mut df = df!("review" => TEXTS.to_vec(), "sentiment" => labels.clone()).unwrap();

    let csv = dir.path().join("in.csv");
    let mut text = String::from("review,sentiment\n");
    for (t, l) in TEXTS.iter().zip(&labels) {
        text.push_str(&format!("\"{t}\",{l}\n"));
    }
    std::fs::write(&csv, text).unwrap();

    let jsonl = dir.path().join("in.jsonl");
    let lines: Vec<String> =
        TEXTS.iter().zip(&labels).map(|(t, l)| format!("{{\"review\": \"{t}\", \"sentiment\": {l}}}")).collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();

    // As Notepad and Excel save it: a byte order mark first.
    let marked = dir.path().join("marked.jsonl");
    std::fs::write(&marked, "\u{feff}".to_owned() + &lines.join("\n") + "\n").unwrap();

    let tsv = dir.path().join("in.tsv");
    let mut text = String::from("review\tsentiment\n");
    for (t, l) in TEXTS.iter().zip(&labels) {
        text.push_str(&format!("{t}\t{l}\n"));
    }
    std::fs::write(&tsv, text).unwrap();

    let parquet = dir.path().join("in.parquet");
    ParquetWriter::new(std::fs::File::create(&parquet).unwrap()).finish(&mut df).unwrap();

    let from_csv = preprocess(&csv, &dir.path().join("csv"));
    assert_eq!(from_csv.len(), 12);
    assert_eq!(from_csv.iter().filter(|r| r.0 == "test").count(), 4);
    assert_eq!(preprocess(&jsonl, &dir.path().join("jsonl")), from_csv);
    assert_eq!(preprocess(&marked, &dir.path().join("marked")), from_csv);
    assert_eq!(preprocess(&tsv, &dir.path().join("tsv")), from_csv);
    assert_eq!(preprocess(&parquet, &dir.path().join("parquet")), from_csv);
}

#[test]
fn a_tsv_row_is_one_line_whatever_quotes_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("in.tab");
    let texts = ["\"unclosed quote, and a comma", "she said \"fine\"", "\"quoted\"", "plain"];
    let lines: Vec<String> = texts.iter().enumerate().map(|(i, t)| format!("{i}\t{t}\t{}", i % 2)).collect();
    std::fs::write(&tsv, format!("id\ttext\tlabel\r\n{}\r\n", lines.join("\r\n"))).unwrap();
    let wanted = graft_preprocess::read::Wanted { training: true, ..to_read(tsv, Some("id"), &[]) };
    let mut rows = graft_preprocess::read::Rows::open_wanted(&wanted).unwrap();
    let mut read = Vec::new();
    while let Some(row) = rows.next_row().unwrap() {
        read.push((row.id.unwrap(), row.text.unwrap(), row.label.unwrap()));
    }
    let expected: Vec<(String, String, String)> =
        texts.iter().enumerate().map(|(i, t)| (i.to_string(), t.to_string(), (i % 2).to_string())).collect();
    assert_eq!(read, expected);
}

#[test]
fn a_column_named_twice_is_refused_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let read = |name: &str, text: &str, extra: &[&str]| {
        let input = dir.path().join(name);
        std::fs::write(&input, text).unwrap();
        let wanted = to_read(input, None, extra);
        let mut rows = graft_preprocess::read::Rows::open_wanted(&wanted)?;
        let mut texts = Vec::new();
        while let Some(row) = rows.next_row()? {
            texts.push(row.text.unwrap());
        }
        Ok::<_, graft_preprocess::Error>(texts)
    };
    // The CSV readers of pandas and polars rename the second `label` and go on; which one
    // was meant is not for a reader to guess.
    let err = read("twice.csv", "text,label,label\ngood,pos,x\n", &[]).unwrap_err().to_string();
    assert!(err.contains("twice.csv") && err.contains("more than one column named `label`"), "{err}");
    let err = read("twice.tsv", "text\tnote\ttext\na\tb\tc\n", &[]).unwrap_err().to_string();
    assert!(err.contains("more than one column named `text`"), "{err}");
    // A repeated column that is not read does not matter, unless every column is kept.
    assert_eq!(read("other.csv", "text,note,note\ngood,a,b\n", &[]).unwrap(), ["good"]);
    let err = read("other.csv", "text,note,note\ngood,a,b\n", &["*"]).unwrap_err().to_string();
    assert!(err.contains("more than one column named `note`"), "{err}");
    let err = read("keep.csv", "text,note\ngood,a\n", &["note", "text", "note"]).unwrap_err().to_string();
    assert_eq!(err, "`--keep` names `note` twice");
    // JSON parsers disagree on a repeated key (Python's takes the last): refused, on any line.
    let err = read("twice.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\", \"text\": \"c\"}\n", &[]).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).map(|e| e.to_string()).unwrap_or_default());
    assert!(
        chain.contains("twice.jsonl") && chain.contains("line 2") && chain.contains("key `text` appears twice"),
        "{chain}"
    );
}

#[test]
fn a_jsonl_column_is_any_key_any_line_holds() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // Writers that drop nulls leave keys out of some lines: the first line has no label,
    // no text and no `channel`, which later lines have.
    let lines = [
        r#"{"id": "a"}"#,
        r#"{"id": "b", "text": "fine", "label": "pos"}"#,
        "",
        r#"{"channel": "web", "id": "c", "text": "dull", "label": "neg"}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let wanted = to_read(input, Some("id"), &["*"]);
    let mut rows = graft_preprocess::read::Rows::open_wanted(&wanted).unwrap();
    assert_eq!(rows.extra(), ["id", "text", "label", "channel"], "keys in the order first met");
    let mut read = Vec::new();
    while let Some(row) = rows.next_row().unwrap() {
        read.push((row.id, row.text, row.label, row.extra[3].clone()));
    }
    let some = |s: &str| Some(s.to_owned());
    assert_eq!(
        read,
        [
            (some("a"), None, None, None),
            (some("b"), some("fine"), some("pos"), None),
            (some("c"), some("dull"), some("neg"), some("web")),
        ]
    );
}

#[test]
fn a_blank_or_null_id_is_missing_in_every_format_not_the_row_number() {
    // Row 1's id is null (or empty in CSV), row 2's blank: taking the row's number instead
    // would give row 1 the id `1`, which is row 4's.
    let dir = tempfile::tempdir().unwrap();
    let ids = [Some("7"), None, Some("  "), Some("3"), Some("1")];
    let text = ["a", "b", "c", "d", "e"];
    let mut csv = String::from("id,text\n");
    let mut jsonl = String::new();
    for (id, t) in ids.iter().zip(text) {
        csv.push_str(&format!("{},{t}\n", id.unwrap_or("")));
        match id {
            Some(id) => jsonl.push_str(&format!("{{\"id\": \"{id}\", \"text\": \"{t}\"}}\n")),
            None => jsonl.push_str(&format!("{{\"id\": null, \"text\": \"{t}\"}}\n")),
        }
    }
    std::fs::write(dir.path().join("in.csv"), csv).unwrap();
    std::fs::write(dir.path().join("in.jsonl"), jsonl).unwrap();
    let mut df = df!("id" => ids.to_vec(), "text" => text.to_vec()).unwrap();
    ParquetWriter::new(std::fs::File::create(dir.path().join("in.parquet")).unwrap()).finish(&mut df).unwrap();
    let want = [Some("7".to_owned()), None, None, Some("3".to_owned()), Some("1".to_owned())];
    for name in ["in.csv", "in.jsonl", "in.parquet"] {
        let wanted = to_read(dir.path().join(name), Some("id"), &[]);
        let mut rows = graft_preprocess::read::Rows::open_wanted(&wanted).unwrap();
        let mut got = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            got.push(row.id);
        }
        assert_eq!(got, want, "{name}");
    }
    // A Parquet column of lists is no text: refused naming it and its type, not cast.
    let lists = Series::new("text".into(), [Series::new("".into(), ["a"]), Series::new("".into(), ["b"])]);
    let mut df = DataFrame::new(2, vec![Column::from(lists), Column::new("id".into(), ["1", "2"])]).unwrap();
    ParquetWriter::new(std::fs::File::create(dir.path().join("lists.parquet")).unwrap()).finish(&mut df).unwrap();
    let wanted = to_read(dir.path().join("lists.parquet"), Some("id"), &[]);
    let err = graft_preprocess::read::Rows::open_wanted(&wanted).err().unwrap().to_string();
    assert!(err.contains("lists.parquet` column `text` holds list[str]: expected text"), "{err}");

    // Training: rows without an id are dropped and counted; an id given twice is refused.
    let train = |csv: &str| {
        let input = dir.path().join("train.csv");
        std::fs::write(&input, csv).unwrap();
        let cfg = config(&input, &dir.path().join("data"), ["text", "label"], Some("id"), 0.0, 0.0);
        graft_preprocess::run(&cfg, &Silent)
    };
    let summary = train("id,text,label\n1,great film,1\n,dull plot,0\n ,awful,1\n2,clever,0\n").unwrap();
    assert_eq!((summary.rows_read, summary.written["train"]), (4, 2));
    assert_eq!(summary.dropped, [("missing id", 2)].into_iter().collect());
    let err = train("id,text,label\n1,great film,1\n2,dull plot,0\n1,awful,0\n").unwrap_err().to_string();
    assert!(err.contains("id column `id` of") && err.contains("repeats `1` (data row 2"), "{err}");
}

#[test]
fn malformed_jsonl_line_and_missing_key_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let run = |text: &str| {
        std::fs::write(&input, text).unwrap();
        let cfg = graft_preprocess::Config {
            seed: 1,
            ..config(&input, &dir.path().join("out"), ["review", "sentiment"], None, 0.0, 0.0)
        };
        graft_preprocess::run(&cfg, &Silent).unwrap_err().to_string()
    };
    let err = run("{\"review\": \"good\", \"sentiment\": 1}\n{\"review\": \"bad\", \"sentiment\": 0\n");
    assert!(err.contains("in.jsonl") && err.contains("line 2"), "{err}");
    let err = run("{\"text\": \"good\", \"sentiment\": 1}\n");
    assert!(err.contains("no column `review`") && err.contains("`text`"), "{err}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn parquet_larger_than_one_slice_gives_the_same_rows_as_csv() {
    // More rows than one Parquet slice, with a filter column: slices must join seamlessly.
    let n = graft_preprocess::read::PARQUET_SLICE + 1_500;
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<&str> = (0..n).map(|i| TEXTS[i % TEXTS.len()]).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| (i / 3) % 2).collect();
    let source: Vec<&str> = (0..n).map(|i| if i % 7 == 0 { "x" } else { "y" }).collect();
    let mut df = df!("review" => texts.clone(), "sentiment" => labels.clone(), "source" => source.clone()).unwrap();
    let parquet = dir.path().join("big.parquet");
    ParquetWriter::new(std::fs::File::create(&parquet).unwrap()).finish(&mut df).unwrap();
    let csv = dir.path().join("big.csv");
    let mut text = String::from("review,sentiment,source\n");
    for i in 0..n {
        text.push_str(&format!("\"{}\",{},{}\n", texts[i], labels[i], source[i]));
    }
    std::fs::write(&csv, text).unwrap();
    let run = |input: &Path, out: &str| {
        let cfg = graft_preprocess::Config {
            filters: vec!["source=y".into()],
            ..config(input, &dir.path().join(out), ["review", "sentiment"], None, 0.1, 0.1)
        };
        graft_preprocess::run(&cfg, &Silent).unwrap();
        rows(&dir.path().join(out))
    };
    let from_parquet = run(&parquet, "parquet");
    assert_eq!(from_parquet.len(), (0..n).filter(|i| i % 7 != 0).count());
    // Default ids are row positions in the whole file, also past the first slice.
    assert!(from_parquet.iter().any(|r| r.1.parse::<usize>().unwrap() > graft_preprocess::read::PARQUET_SLICE));
    assert_eq!(from_parquet, run(&csv, "csv"));
}
