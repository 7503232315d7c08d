//! Text cleaning: HTML tags and entities out, whitespace collapsed.

use std::sync::LazyLock;

use regex::Regex;

static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<[A-Za-z/!][^>]*>").expect("static regex"));
static SPACE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("static regex"));

const ENTITIES: [(&str, &str); 6] =
    [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&nbsp;", " "), ("&amp;", "&")];

/// Replaces HTML tags (`<br />`, `<i>`) by spaces, decodes the common entities and
/// collapses runs of whitespace; the result is trimmed and may be empty.
pub fn clean_text(raw: &str) -> String {
    let mut text = TAG.replace_all(raw, " ").into_owned();
    if text.contains('&') {
        for (entity, ch) in ENTITIES {
            text = text.replace(entity, ch);
        }
    }
    SPACE.replace_all(text.trim(), " ").into_owned()
}

#[cfg(test)]
mod tests {
    use super::clean_text;

    #[test]
    fn strips_tags_entities_and_whitespace() {
        assert_eq!(clean_text("Great.<br /><br />Really  great &amp; fun"), "Great. Really great & fun");
        assert_eq!(clean_text("  <i>x</i>\t\ny "), "x y");
        assert_eq!(clean_text("<br/>  "), "");
        assert_eq!(clean_text("a < b and c > d"), "a < b and c > d");
    }
}
