//! Texts to token ids, truncated at the tokenizer's `max_length`, without tokenising more of
//! a long text than its kept tokens need.
//!
//! A tokenizer holds tens of bytes of state per byte of text (alignments, offsets, token
//! strings): a 15 MB text, such as a CSV field whose closing quote is missing, took 1.2 GB.
//! A text longer than [`BYTES_PER_TOKEN`] bytes per token of `max_length` is tokenised from a
//! prefix that ends before a whitespace character, doubled until the prefix's tokens overflow
//! `max_length` and a whitespace character lies between the last kept token and the cut.
//! Tokenizers split words at whitespace and never merge tokens across words, so the kept
//! tokens are then those of the whole text (only the prefix's last word, past them, may
//! differ), and so is whether it was truncated. A text with no whitespace after the first
//! prefix is tokenised whole.

use tokenizers::{Encoding, Tokenizer};

/// Bytes of a long text first tokenised, per token of `max_length`.
pub const BYTES_PER_TOKEN: usize = 32;

/// The encodings of `texts`, the same as the whole texts' (truncation as set on `tokenizer`).
pub fn encode_batch(tokenizer: &Tokenizer, texts: &[&str]) -> tokenizers::Result<Vec<Encoding>> {
    let Some(max_length) = tokenizer.get_truncation().map(|t| t.max_length) else {
        return tokenizer.encode_batch(texts.to_vec(), true);
    };
    let first = BYTES_PER_TOKEN * max_length.max(1);
    let cuts: Vec<&str> = texts.iter().map(|t| prefix(t, first)).collect();
    let mut encodings = tokenizer.encode_batch(cuts.clone(), true)?;
    for ((text, mut cut), encoding) in texts.iter().zip(cuts).zip(&mut encodings) {
        let mut bytes = first;
        while cut.len() < text.len() && !settled(cut, encoding) {
            bytes = bytes.saturating_mul(2);
            cut = prefix(text, bytes);
            *encoding = tokenizer.encode(cut, true)?;
        }
    }
    Ok(encodings)
}

/// Whether `encoding` of the prefix `cut` keeps the whole text's tokens: it was truncated,
/// and a whitespace character separates the last kept token from the cut's last word.
fn settled(cut: &str, encoding: &Encoding) -> bool {
    let kept_end = encoding
        .get_offsets()
        .iter()
        .zip(encoding.get_special_tokens_mask())
        .filter(|(_, special)| **special == 0)
        .map(|(&(_, end), _)| end)
        .max()
        .unwrap_or(0);
    !encoding.get_overflowing().is_empty() && cut.get(kept_end..).is_some_and(|rest| rest.contains(char::is_whitespace))
}

/// `text` up to the first whitespace character at or after byte `bytes`; all of it when it
/// is no longer or has no whitespace there.
fn prefix(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let from = (bytes..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    match text[from..].find(char::is_whitespace) {
        Some(at) => &text[..from + at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

    /// Long texts of the fixtures' words with single and repeated spaces, tabs, newlines,
    /// punctuation, accents and a long word, seeded.
    fn texts() -> Vec<String> {
        let words = [
            "great",
            "film",
            "the",
            "Dull",
            "movie,",
            "plot.",
            "and",
            "café",
            "naïve",
            "!",
            "cast",
            "'s",
            "really",
            "wonderful",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "moving",
            "é",
            "12",
            "3.5",
        ];
        let gaps = [" ", " ", " ", "  ", "\t", "\n", " \n ", "   "];
        let mut rng = graft_core::rng::SplitMix64::new(3);
        let mut out = vec![String::new(), "a short one".to_owned()];
        for words_in in [5, 40, 100, 300, 2_000, 20_000, 100_000] {
            let mut text = String::new();
            for i in 0..words_in {
                if i > 0 {
                    text.push_str(gaps[rng.below(gaps.len())]);
                }
                text.push_str(words[rng.below(words.len())]);
            }
            out.push(text);
        }
        // Long runs of whitespace: the first prefix holds too few tokens and is doubled.
        out.push(["moving"; 400].join(&" ".repeat(100)));
        // No whitespace after the first prefix: tokenised whole.
        out.push(format!("{} {}", "word ".repeat(50), "y".repeat(40_000)));
        out
    }

    #[test]
    fn long_texts_give_the_whole_texts_kept_tokens_and_truncation() {
        let tokenizers = ["tiny/tokenizer.json"]
            .into_iter()
            .map(str::to_owned)
            .chain(["bert", "distilbert", "roberta", "mpnet"].map(|m| format!("tiny-encoders/{m}/tokenizer.json")));
        let texts = texts();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        for path in tokenizers {
            for max_length in [12, 64] {
                let tokenizer = crate::load_tokenizer(&std::path::Path::new(FIXTURES).join(&path), max_length).unwrap();
                let got = encode_batch(&tokenizer, &texts).unwrap();
                for (text, enc) in texts.iter().zip(&got) {
                    let whole = tokenizer.encode(*text, true).unwrap();
                    assert_eq!(enc.get_ids(), whole.get_ids(), "{path}, max_length {max_length}, {} bytes", text.len());
                    assert_eq!(
                        enc.get_overflowing().is_empty(),
                        whole.get_overflowing().is_empty(),
                        "{path}, max_length {max_length}, {} bytes: truncated or not",
                        text.len()
                    );
                }
            }
        }
    }

    #[test]
    fn prefixes_end_before_whitespace_past_the_bound() {
        assert_eq!(prefix("abc def", 10), "abc def");
        assert_eq!(prefix("abc def ghi", 2), "abc");
        assert_eq!(prefix("abc def ghi", 4), "abc def");
        assert_eq!(prefix("abcdefghi", 2), "abcdefghi", "no whitespace: whole");
        assert_eq!(prefix("aé b", 2), "aé", "a cut inside a character moves to its end");
    }
}
