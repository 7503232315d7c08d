//! Grouping rows into inference batches: similar lengths together, so padding to each
//! batch's longest row wastes little.

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most rows in a batch.
    pub rows: usize,
    /// Most padded tokens (rows x longest row) in a batch; 0 for no token limit.
    pub tokens: usize,
}

/// Row indices sorted by length, cut into batches within `limits`; every row appears once.
/// A row longer than the token budget forms a batch of its own.
pub fn plan(lengths: &[usize], limits: Limits) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending, so this row is the longest of the batch it joins.
        let padded = (current.len() + 1) * lengths[i];
        let full = current.len() >= limits.rows.max(1) || (limits.tokens > 0 && padded > limits.tokens);
        if full && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_by_rows_in_length_order() {
        let b = plan(&[5, 1, 3, 2], Limits { rows: 2, tokens: 0 });
        assert_eq!(b, vec![vec![1, 3], vec![2, 0]]);
    }

    #[test]
    fn token_budget_bounds_padded_size_and_keeps_every_row() {
        let lengths = [10, 3, 3, 3, 3, 8, 40, 9];
        let b = plan(&lengths, Limits { rows: 100, tokens: 20 });
        for batch in &b {
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(batch.len() == 1 || batch.len() * longest <= 20, "{batch:?}");
        }
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
        assert_eq!(b.last().unwrap(), &vec![6], "the 40-token row is alone");
    }
}
