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
    ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&eval), "--curve", s(&curve), "-q"]);
    let html = std::fs::read_to_string(eval.join("report.html")).unwrap();
    assert!(html.contains("&lt;b&gt;pos&lt;/b&gt;") && !html.contains("<b>pos</b>"), "labels escaped");
    assert!(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"), "self-contained");
    for title in
        ["Confusion matrix", "ROC", "Precision-recall", "Reliability", "Training loss", "Learning curve", "Provenance"]
    {
        assert!(html.contains(title), "{title} missing");
    }
    let (console, pixels) = render(&eval.join("report.html"), &root.join("report.png"));
    assert!(console.is_empty(), "console messages: {console:?}");
    // Plot strokes in the palette's first two colours, and heatmap cells, are on screen.
    let (blue, orange) = (count(&pixels, [0x1f, 0x77, 0xb4]), count(&pixels, [0xff, 0x7f, 0x0e]));
    assert!(blue > 2000 && orange > 500, "drawn pixels: blue {blue}, orange {orange}");
}
