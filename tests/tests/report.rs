//! report.html rendered by headless Chromium (`make test` installs Debian's `chromium`):
//! it loads without console errors, its plots are drawn, and label text is escaped.

use std::path::Path;
use std::process::Command;

use graft_e2e::*;

/// Renders `page` to a PNG; returns Chromium's console messages and the decoded pixels.
fn render(page: &Path, png: &Path) -> (Vec<String>, Vec<[u8; 3]>) {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"])
        .arg("--window-size=1400,2600")
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium on PATH: `make test` installs it (scripts/setup_chromium.sh)");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let console =
        String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("CONSOLE")).map(str::to_owned).collect();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks_exact(step).map(|p| [p[0], p[1], p[2]]).collect();
    (console, pixels)
}

fn count(pixels: &[[u8; 3]], rgb: [u8; 3]) -> usize {
    pixels.iter().filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 8)).count()
}

#[test]
fn console_errors_would_be_seen() {
    // The detector itself: a page that logs an error is caught.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("bad.html");
    std::fs::write(&page, "<html><body><script>console.error('broken')</script></body></html>").unwrap();
    let (console, _) = render(&page, &dir.path().join("bad.png"));
    assert!(console.iter().any(|l| l.contains("broken")), "{console:?}");
}

#[test]
fn report_loads_cleanly_draws_its_plots_and_escapes_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Labels with markup in them must come out as text.
    let csv = std::fs::read_to_string(fixture("tiny/reviews.csv")).unwrap().replace(",pos,", ",<b>pos</b>,");
    std::fs::write(root.join("reviews.csv"), csv).unwrap();
    let spec = fixture("tiny/tiny.yaml");
    let (data, feats, head, eval) = (root.join("data"), root.join("features"), root.join("head"), root.join("eval"));
    ok("graft-preprocess", &["--input", s(&root.join("reviews.csv")), "--spec", s(&spec), "--out", s(&data), "-q"]);
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&data), "--out", s(&feats), "-q"]);
    ok(
        "graft-finetune",
        &["--features", s(&feats), "--out", s(&head), "--head", "mlp", "--hidden", "8", "--epochs", "6", "-q"],
    );
    let curve = root.join("curve");
    ok(
        "graft-finetune",
        &["curve", "--features", s(&feats), "--sizes", "2,8", "--repeats", "2", "--c", "1", "--out", s(&curve), "-q"],
    );
    let curve = curve.join("curve.json");
    let args =
        ["--head", s(&head), "--features", s(&feats), "--out", s(&eval), "--curve", s(&curve), "--data", s(&data)];
    ok("graft-evaluate", &[&args[..], &["-q"]].concat());
    let html = std::fs::read_to_string(eval.join("report.html")).unwrap();
    assert_eq!(wrong_rows(&html), expected_wrong(&eval.join("predictions.arrow"), &data.join("test.arrow")));
    assert!(!wrong_rows(&html).is_empty(), "the tiny model makes mistakes");
    // The head's settings are those of an MLP only.
    let config = html.split("head config</td><td><code>").nth(1).unwrap().split("</td>").next().unwrap();
    assert!(config.contains("&quot;hidden&quot;") && !config.contains("&quot;c&quot;"), "{config}");
    assert!(html.contains("&lt;b&gt;pos&lt;/b&gt;") && !html.contains("<b>pos</b>"), "labels escaped");
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"), "self-contained");
    for title in [
        "Confusion matrix",
        "Shares of each true class",
        "ROC",
        "Precision-recall",
        "Reliability",
        "Predicted probability by true class",
        "Thresholds",
        "best F1 on val",
        "Most confident wrong predictions",
        "Training loss",
        "Learning curve",
        "Provenance",
    ] {
        assert!(html.contains(title), "{title} missing");
    }
    let (console, pixels) = render(&eval.join("report.html"), &root.join("report.png"));
    assert!(console.is_empty(), "console messages: {console:?}");
    // Plot strokes in the palette's first two colours, and heatmap cells, are on screen.
    let (blue, orange) = (count(&pixels, [0x1f, 0x77, 0xb4]), count(&pixels, [0xff, 0x7f, 0x0e]));
    assert!(blue > 2000 && orange > 500, "drawn pixels: blue {blue}, orange {orange}");
}

/// The rows of the report's wrong-predictions table: (id, true, predicted, text).
fn wrong_rows(html: &str) -> Vec<[String; 4]> {
    let Some(table) = html.split("<table class=\"wrong\">").nth(1) else { return Vec::new() };
    let table = table.split("</table>").next().unwrap();
    let unescape = |t: &str| {
        t.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
    };
    table
        .split("<tr><td>")
        .skip(1)
        .map(|row| {
            let cells: Vec<String> = row.split("</td>").map(|c| unescape(c.rsplit('>').next().unwrap_or(c))).collect();
            [cells[0].clone(), cells[1].clone(), cells[2].clone(), cells[4].clone()]
        })
        .collect()
}

/// The same table computed here from predictions.arrow and the data split: per (true,
/// predicted) pair the five wrong rows with the highest probability on the predicted class,
/// pairs with more errors first.
fn expected_wrong(predictions: &Path, data: &Path) -> Vec<[String; 4]> {
    use arrow::array::{Array, Float64Array, StringArray};
    use graft_core::artifact::ArtifactReader;
    let strings = |b: &arrow::array::RecordBatch, n: &str| {
        b.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone()
    };
    let mut r = ArtifactReader::open(predictions).unwrap();
    let labels = r.provenance().labels.clone();
    let mut wrong: std::collections::BTreeMap<(String, String), Vec<(f64, String)>> = Default::default();
    while let Some(b) = r.next_batch().unwrap() {
        let (ids, truth, pred) = (strings(&b, "id"), strings(&b, "label"), strings(&b, "pred"));
        for i in 0..b.num_rows() {
            if truth.value(i) != pred.value(i) {
                let column = b.column_by_name(&format!("prob_{}", pred.value(i))).unwrap();
                let p = column.as_any().downcast_ref::<Float64Array>().unwrap().value(i);
                wrong.entry((truth.value(i).into(), pred.value(i).into())).or_default().push((p, ids.value(i).into()));
            }
        }
    }
    assert_eq!(labels.len(), 2);
    let mut text = std::collections::HashMap::new();
    let mut r = ArtifactReader::open(data).unwrap();
    while let Some(b) = r.next_batch().unwrap() {
        let (ids, texts) = (strings(&b, "id"), strings(&b, "text"));
        for i in 0..b.num_rows() {
            text.insert(ids.value(i).to_owned(), texts.value(i).to_owned());
        }
    }
    let mut pairs: Vec<_> = wrong.into_iter().collect();
    pairs.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    let mut out = Vec::new();
    for ((t, p), mut rows) in pairs {
        rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, id) in rows.into_iter().take(5) {
            out.push([id.clone(), t.clone(), p.clone(), text[&id].clone()]);
        }
    }
    out
}
