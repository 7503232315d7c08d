//! Metrics with scikit-learn's definitions, checked against scikit-learn on committed
//! fixtures. A metric that is undefined for the data (e.g. ROC-AUC with one class present)
//! is `None`, never NaN.

mod confusion;
mod probability;
mod rank;
mod regression;

pub use confusion::{ClassMetrics, Classification, classification};
pub use probability::{Probabilistic, probabilistic, reliability_bins};
pub use rank::{average_ranks, binary_average_precision, binary_roc_auc, pr_curve, roc_curve};
pub use regression::{Regression, regression};
