//! Each stage's parameters: one struct per stage, the single definition of its command-line
//! flags and their defaults (clap), of its keys in pipeline files (`args`, checked by `graft`
//! against these before anything runs) and of their JSON Schema.

pub mod backbone;
pub mod evaluate;
pub mod finetune;
pub mod preprocess;

use std::path::Path;

use clap::Args;

/// The stage binaries whose flags are known here.
pub const STAGES: [&str; 4] = ["graft-preprocess", "graft-backbone", "graft-finetune", "graft-evaluate"];

/// The main command's flags of stage binary `cmd` (a name or a path to it); `None` for a
/// program that is not a graft stage.
pub fn stage_command(cmd: &str) -> Option<clap::Command> {
    let file = Path::new(cmd).file_name()?.to_str()?;
    let name: &'static str = STAGES.into_iter().find(|s| *s == file)?;
    let quiet = clap::Arg::new("quiet").long("quiet").short('q').action(clap::ArgAction::SetTrue);
    let base = clap::Command::new(name).no_binary_name(true).arg(quiet);
    Some(match name {
        "graft-preprocess" => preprocess::Config::augment_args(base),
        "graft-backbone" => backbone::Config::augment_args(base),
        "graft-finetune" => finetune::HeadConfig::augment_args(finetune::Paths::augment_args(base)),
        "graft-evaluate" => evaluate::Config::augment_args(base),
        _ => return None,
    })
}

/// Checks `argv` (without the program) against the flags of stage `cmd`; the error is clap's
/// message on one line (`unexpected argument '--x' found`, `invalid value 'y' for '--c <C>'`).
pub fn check_args(cmd: &str, argv: &[String]) -> Result<(), String> {
    let Some(command) = stage_command(cmd) else { return Ok(()) };
    command.try_get_matches_from(argv).map(|_| ()).map_err(|e| {
        let text = e.render().to_string();
        let message = text.split("\n\n").next().unwrap_or_default();
        let message = message.strip_prefix("error: ").unwrap_or(message);
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    })
}

/// The pipeline keys of stage `cmd` (flags in snake_case) with their help, in declaration order.
pub fn stage_keys(cmd: &str) -> Vec<(String, String)> {
    let Some(command) = stage_command(cmd) else { return Vec::new() };
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
        let err = check_args("graft-backbone", &argv(&["--spec", "s"])).unwrap_err();
        assert!(err.contains("--input"), "{err}");
        check_args("printf", &argv(&["anything"])).unwrap();
        let keys = stage_keys("graft-preprocess");
        assert!(keys.iter().any(|(k, help)| k == "text_column" && help.contains("text")), "{keys:?}");
    }
}
