//! Each stage's parameters: one struct per stage, the single definition of its command-line
//! flags and their defaults (clap), of its keys in pipeline files (`args`, checked by `graft`
//! against these before anything runs) and of their JSON Schema.

pub mod backbone;
pub mod evaluate;
pub mod finetune;
pub mod preprocess;

use std::path::Path;

use clap::Args;

/// The stage binaries and subcommands whose flags are known here (pipelines run these).
pub const STAGES: [(&str, Option<&str>); 9] = [
    ("graft-preprocess", None),
    ("graft-preprocess", Some("rows")),
    ("graft-backbone", None),
    ("graft-finetune", None),
    ("graft-finetune", Some("layers")),
    ("graft-evaluate", None),
    ("graft-evaluate", Some("bundle")),
    ("graft-evaluate", Some("predict")),
    ("graft-evaluate", Some("mteb")),
];

/// The flags of stage binary `cmd` (a name or a path to it) or of its `subcommand`; `None`
/// for a program or subcommand not in [`STAGES`].
pub fn stage_command(cmd: &str, subcommand: Option<&str>) -> Option<clap::Command> {
    let file = Path::new(cmd).file_name()?.to_str()?;
    let (name, _) = STAGES.into_iter().find(|s| s.0 == file && s.1 == subcommand)?;
    let quiet = clap::Arg::new("quiet").long("quiet").short('q').action(clap::ArgAction::SetTrue);
    let base = clap::Command::new(name).no_binary_name(true).arg(quiet);
    Some(match (name, subcommand) {
        ("graft-preprocess", None) => preprocess::Config::augment_args(base),
        ("graft-preprocess", Some(_)) => preprocess::RowsConfig::augment_args(base),
        ("graft-backbone", _) => backbone::Config::augment_args(base),
        ("graft-finetune", None) => finetune::HeadConfig::augment_args(finetune::Paths::augment_args(base)),
        ("graft-finetune", Some(_)) => finetune::LayersConfig::augment_args(base),
        ("graft-evaluate", None) => evaluate::Config::augment_args(base),
        ("graft-evaluate", Some("bundle")) => evaluate::BundleConfig::augment_args(base),
        ("graft-evaluate", Some("predict")) => evaluate::PredictConfig::augment_args(base),
        ("graft-evaluate", Some(_)) => evaluate::MtebConfig::augment_args(base),
        _ => return None,
    })
}

/// Checks `argv` (without the program; a subcommand first where there is one) against the
/// flags of stage `cmd`; the error is clap's message on one line (`unexpected argument '--x'
/// found`, `invalid value 'y' for '--c <C>'`). Subcommands not in [`STAGES`] are left to
/// the binary.
pub fn check_args(cmd: &str, argv: &[String]) -> Result<(), String> {
    let (subcommand, flags) = match argv.split_first() {
        Some((first, rest)) if !first.starts_with('-') => (Some(first.as_str()), rest),
        _ => (None, argv),
    };
    let Some(command) = stage_command(cmd, subcommand) else { return Ok(()) };
    let matches = command.try_get_matches_from(flags).map_err(|e| {
        let text = e.render().to_string();
        let message = text.split("\n\n").next().unwrap_or_default();
        let message = message.strip_prefix("error: ").unwrap_or(message);
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    })?;
    // A head flag the chosen head does not use would be ignored: refused before anything runs.
    if Path::new(cmd).file_name().and_then(|f| f.to_str()) == Some("graft-finetune") {
        use clap::FromArgMatches;
        let unused = match subcommand {
            None => finetune::HeadConfig::from_arg_matches(&matches)
                .map_err(|e| e.to_string())?
                .first_unused(&given(&matches)),
            Some(_) => finetune::LayersTraining::from_arg_matches(&matches)
                .map_err(|e| e.to_string())?
                .first_unused(&given(&matches)),
        };
        if let Some((_, why)) = unused {
            return Err(why);
        }
    }
    Ok(())
}

/// The ids of the arguments `matches` got from the command line (not defaults).
pub fn given(matches: &clap::ArgMatches) -> Vec<String> {
    matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

/// The pipeline keys of stage `cmd` (flags in snake_case) with their help, in declaration order.
pub fn stage_keys(cmd: &str, subcommand: Option<&str>) -> Vec<(String, String)> {
    let Some(command) = stage_command(cmd, subcommand) else { return Vec::new() };
    command
        .get_arguments()
        .filter_map(|a| {
            let key = a.get_long()?.replace('-', "_");
            Some((key, a.get_help().map(ToString::to_string).unwrap_or_default()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_checked_against_the_stage_flags() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        check_args("graft-finetune", &argv(&["--features", "f", "--out", "h", "--c", "0.1,1"])).unwrap();
        let err = check_args("graft-finetune", &argv(&["--features", "f", "--out", "h", "--unknownkey", "1"]));
        assert!(err.unwrap_err().contains("'--unknownkey'"));
        let err = check_args(
            "bin/graft-evaluate",
            &argv(&["--head", "h", "--features", "f", "--out", "o", "--bootstrap", "x"]),
        );
        assert!(err.unwrap_err().contains("'x'"));
        let err =
            check_args("graft-evaluate", &argv(&["--head", "h", "--features", "f", "--out", "o", "--bootstrap", "5"]));
        assert!(err.unwrap_err().contains("0 (no intervals) or at least 100 resamples, not 5"));
        check_args("graft-evaluate", &argv(&["--head", "h", "--features", "f", "--out", "o", "--bootstrap", "0"]))
            .unwrap();
        let err = check_args("graft-backbone", &argv(&["--spec", "s"])).unwrap_err();
        assert!(err.contains("--input"), "{err}");
        check_args("printf", &argv(&["anything"])).unwrap();
        let err = check_args("graft-finetune", &argv(&["--features", "f", "--out", "h", "--head", "mlp", "--c", "1"]));
        assert_eq!(err.unwrap_err(), "`c` is a key of the logistic_regression head, and the head is mlp");
        let err = check_args("graft-finetune", &argv(&["--features", "f", "--out", "h", "--epochs", "3"]));
        assert_eq!(err.unwrap_err(), "`epochs` is a key of the mlp head, and the head is logistic_regression");
        let err = check_args(
            "graft-finetune",
            &argv(&["--features", "f", "--out", "h", "--head", "mlp", "--momentum", "0.5"]),
        );
        assert_eq!(err.unwrap_err(), "`momentum` is used by the sgd optimizer only, and the optimizer is adamw");
        let sgd = ["--features", "f", "--out", "h", "--head", "mlp", "--optimizer", "sgd", "--momentum", "0.5"];
        check_args("graft-finetune", &argv(&sgd)).unwrap();
        check_args("graft-evaluate", &argv(&["bundle", "--head", "h", "--spec", "s", "--data", "d", "--out", "b"]))
            .unwrap();
        let err = check_args("graft-evaluate", &argv(&["predict", "--bundle", "b"])).unwrap_err();
        assert!(err.contains("--rows"), "{err}");
        let keys = stage_keys("graft-preprocess", None);
        assert!(keys.iter().any(|(k, help)| k == "text_column" && help.contains("text")), "{keys:?}");
    }
}
