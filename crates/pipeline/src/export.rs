//! The same pipeline as a Makefile or a shell script: one rule or command per stage, with
//! exactly the argument vector `graft run` uses. Both are meant to live in the pipeline
//! file's folder (paths are relative to it) and find the stage binaries on `PATH`, or in
//! the folder `GRAFT_BIN` names.

use std::fmt::Write;
use std::path::Path;

use crate::definition::{self, Pipeline};
use crate::error::Result;

/// Formats of `graft dag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DagFormat {
    /// One line per stage: `stage <- upstream stages`.
    Text,
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz dot.
    Dot,
}

/// Renders the stage graph of `pipeline_path`.
pub fn dag(pipeline_path: &Path, format: DagFormat) -> Result<String> {
    let (pipeline, order) = crate::expand::load(pipeline_path, &[])?;
    let upstream = definition::upstream(&pipeline).expect("validated by load");
    let mut out = String::new();
    match format {
        DagFormat::Text => {
            for name in &order {
                let _ = writeln!(out, "{name} <- {}", upstream[name.as_str()].join(", "));
            }
        }
        DagFormat::Mermaid => {
            // Node ids by position: expanded stage names hold brackets and commas.
            let id = |name: &str| format!("s{}", order.iter().position(|n| n == name).expect("a stage"));
            out.push_str("flowchart TD\n");
            for name in &order {
                let _ = writeln!(out, "    {}[\"{name}: {}\"]", id(name), pipeline.stages[name].cmd);
                for up in &upstream[name.as_str()] {
                    let _ = writeln!(out, "    {} --> {}", id(up), id(name));
                }
            }
        }
        DagFormat::Dot => {
            out.push_str("digraph pipeline {\n    rankdir=TB;\n");
            for name in &order {
                let _ = writeln!(out, "    \"{name}\" [label=\"{name}\\n{}\"];", pipeline.stages[name].cmd);
                for up in &upstream[name.as_str()] {
                    let _ = writeln!(out, "    \"{up}\" -> \"{name}\";");
                }
            }
            out.push_str("}\n");
        }
    }
    Ok(out)
}

/// Formats of `graft export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A GNU Makefile (4.3+: grouped targets): one rule per stage, its outputs the targets.
    Make,
    /// A POSIX shell script that runs every stage in order.
    Sh,
    /// An Apache Airflow DAG (Python): one BashOperator per stage; a stage with `shards: N`
    /// becomes N mapped tasks (`--shard I/N`) and a merge task.
    Airflow,
}

/// Stands for the partition while the DAG is written; becomes Airflow's `{{ ds }}`.
const PARTITION: &str = "GRAFT_PARTITION_PLACEHOLDER";

/// Renders `pipeline_path` in `format`.
pub fn export(pipeline_path: &Path, format: Format) -> Result<String> {
    let schedule = crate::definition::parse(pipeline_path)?.schedule;
    let partition = match (&schedule, format) {
        (Some(s), Format::Airflow) => vec![format!("params.{}={PARTITION}", s.partition)],
        _ => Vec::new(),
    };
    let (pipeline, order) = crate::expand::load(pipeline_path, &partition)?;
    let source = pipeline_path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    Ok(match format {
        Format::Make => makefile(&pipeline, &order, &source)
            .map_err(|message| crate::Error::Invalid { path: pipeline_path.to_owned(), message })?,
        Format::Sh => shell(&pipeline, &order, &source),
        Format::Airflow => {
            let dir = std::path::absolute(
                pipeline_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")),
            )
            .map_err(|source| crate::Error::Read { path: pipeline_path.to_owned(), source })?;
            // The logical date reaches each command through Airflow's templating.
            airflow(&pipeline, &order, &source, &dir).replace(PARTITION, "{{ ds }}")
        }
    })
}

fn command(pipeline: &Pipeline, name: &str, bin: &str) -> String {
    let stage = &pipeline.stages[name];
    let mut words = vec![format!("{bin}{}", stage.cmd)];
    words.extend(stage.argv().iter().map(|a| shell_quote(a)));
    words.join(" ")
}

fn makefile(pipeline: &Pipeline, order: &[String], source: &str) -> Result<String, String> {
    let mut out = String::new();
    let _ = writeln!(out, "# Exported by `graft export --to make` from {source}; keep it beside that file.");
    let _ = writeln!(out, "# Stage binaries come from PATH, or from GRAFT_BIN (a folder ending in /).");
    let _ = writeln!(out, "GRAFT_BIN ?=\n");
    let targets: Vec<String> = order.iter().map(|n| make_target(n)).collect();
    let _ = writeln!(out, ".PHONY: all {}", targets.join(" "));
    let _ = writeln!(out, "all: {}\n", targets.join(" "));
    for (name, target) in order.iter().zip(&targets) {
        let stage = &pipeline.stages[name];
        let in_stage = |m: String| format!("stage `{name}`: {m}; export with `--to sh`, or run it with `graft run`");
        let outs: Vec<String> = stage.outs.iter().map(|p| make_path(p)).collect::<Result<_, _>>().map_err(in_stage)?;
        let deps: Vec<String> = stage.deps.iter().map(|p| make_path(p)).collect::<Result<_, _>>().map_err(in_stage)?;
        if let Some(arg) = stage.argv().iter().find(|a| a.chars().any(char::is_control)) {
            return Err(in_stage(format!(
                "argument {arg:?} holds a control character, which a make recipe cannot carry"
            )));
        }
        let _ = writeln!(out, "{target}: {}", outs.join(" "));
        let recipe =
            command(pipeline, name, "$(GRAFT_BIN)").replace('$', "$$").replace("$$(GRAFT_BIN)", "$(GRAFT_BIN)");
        if outs.is_empty() {
            let _ = writeln!(out, "\t{recipe}\n");
        } else {
            let _ = writeln!(out, "{} &: {}\n\t{recipe}\n", outs.join(" "), deps.join(" "));
        }
    }
    Ok(out)
}

/// A stage name as a make target: characters make would read as syntax become `_`.
fn make_target(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// A path as a make target or prerequisite: `$`, spaces and `#` escaped; characters that
/// make reads as rule syntax whatever the escaping (`:`, `%`, `;`, wildcards, control
/// characters) are refused.
fn make_path(p: &Path) -> Result<String, String> {
    let text = p.to_string_lossy();
    if let Some(c) = text.chars().find(|c| c.is_control() || ":%;*?[]\\=".contains(*c)) {
        return Err(format!("path {text:?} holds {c:?}, which make reads as syntax"));
    }
    Ok(text.replace('$', "$$").replace(' ', "\\ ").replace('#', "\\#"))
}

fn shell(pipeline: &Pipeline, order: &[String], source: &str) -> String {
    let mut out = String::from("#!/bin/sh\n");
    let _ = writeln!(out, "# Exported by `graft export --to sh` from {source}; keep it beside that file.");
    let _ = writeln!(out, "# Stage binaries come from PATH, or from GRAFT_BIN (a folder ending in /).");
    let _ = writeln!(out, "set -eu\ncd \"$(dirname \"$0\")\"\nGRAFT_BIN=${{GRAFT_BIN:-}}\n");
    for name in order {
        let _ = writeln!(out, "echo \"graft: stage {name}\" >&2");
        let _ = writeln!(out, "{}\n", command(pipeline, name, "\"$GRAFT_BIN\""));
    }
    out
}

/// A Python string literal.
fn py(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// An Airflow task id: letters, digits, `_`, `-` and `.` only. An expanded stage
/// `finetune[layer=3,c=0.1]` becomes `finetune.layer-3.c-0.1`.
fn task_id(name: &str) -> String {
    let readable = match name.split_once('[') {
        Some((base, rest)) => {
            let parts = rest.trim_end_matches(']').split(',').map(|kv| kv.replacen('=', "-", 1));
            std::iter::once(base.to_owned()).chain(parts).collect::<Vec<_>>().join(".")
        }
        None => name.to_owned(),
    };
    make_target(&readable)
}

fn airflow(pipeline: &Pipeline, order: &[String], source: &str, dir: &Path) -> String {
    let upstream = definition::upstream(pipeline).expect("validated by load");
    let dag_id = task_id(source.trim_end_matches(".yaml").trim_end_matches(".yml"));
    let mut out = String::new();
    let _ = writeln!(out, "# Exported by `graft export --to airflow` from {source}. Stages run in the pipeline's");
    let _ = writeln!(out, "# folder (GRAFT_PIPELINE_DIR) with binaries from PATH or GRAFT_BIN (a folder ending in /).");
    out.push_str("import os\nimport shlex\n\nimport pendulum\nfrom airflow import DAG\n");
    out.push_str("try:\n    from airflow.providers.standard.operators.bash import BashOperator\nexcept ImportError:\n    from airflow.operators.bash import BashOperator\n\n");
    let _ = writeln!(out, "PIPELINE_DIR = os.environ.get(\"GRAFT_PIPELINE_DIR\", {})", py(&dir.to_string_lossy()));
    out.push_str("GRAFT_BIN = os.environ.get(\"GRAFT_BIN\", \"\")\n\n\n");
    out.push_str(
        "def command(cmd, *args):\n    \"\"\"The stage's command line, run from the pipeline's folder.\"\"\"\n",
    );
    out.push_str("    words = [GRAFT_BIN + cmd, *args]\n    return \"cd \" + shlex.quote(PIPELINE_DIR) + \" && \" + \" \".join(shlex.quote(w) for w in words)\n\n\n");
    let schedule = pipeline.schedule.as_ref().map_or_else(|| "None".to_owned(), |s| py(&s.cron));
    let _ = writeln!(
        out,
        "with DAG(dag_id={}, description={}, schedule={schedule}, start_date=pendulum.datetime(2024, 1, 1, tz=\"UTC\"), catchup=False, tags=[\"graft\"]) as dag:",
        py(&dag_id),
        py(pipeline.description.as_deref().unwrap_or(source))
    );
    // The task each stage's downstream waits for (a sharded stage's merge).
    let mut last: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for (index, name) in order.iter().enumerate() {
        let stage = &pipeline.stages[name];
        // Python names by position; task ids from the stage names.
        let (var, id) = (format!("t{index}"), task_id(name));
        let argv = stage.argv();
        let args = |argv: &[String]| argv.iter().map(|a| py(a)).collect::<Vec<_>>().join(", ");
        match stage.shards.filter(|&n| n > 1) {
            None => {
                let _ = writeln!(
                    out,
                    "    {var} = BashOperator(task_id={}, bash_command=command({}, {}))",
                    py(&id),
                    py(&stage.cmd),
                    args(&argv)
                );
                last.insert(name, var.clone());
            }
            Some(n) => {
                // Each shard writes OUT.shard-I; the merge writes OUT.
                let out_dir =
                    argv.iter().position(|a| a == "--out").and_then(|i| argv.get(i + 1)).cloned().unwrap_or_default();
                let shard_argv = |i: u32| -> Vec<String> {
                    let mut a = argv.clone();
                    if let Some(pos) = a.iter().position(|w| w == "--out") {
                        a[pos + 1] = format!("{out_dir}.shard-{i}");
                    }
                    a.extend(["--shard".to_owned(), format!("{i}/{n}")]);
                    a
                };
                let commands: Vec<String> =
                    (0..n).map(|i| format!("command({}, {})", py(&stage.cmd), args(&shard_argv(i)))).collect();
                let _ = writeln!(
                    out,
                    "    {var} = BashOperator.partial(task_id={}).expand(bash_command=[{}])",
                    py(&id),
                    commands.join(", ")
                );
                let mut merge = vec!["merge".to_owned(), "--out".to_owned(), out_dir.clone()];
                merge.extend((0..n).map(|i| format!("{out_dir}.shard-{i}")));
                let (merge_var, merge_id) = (format!("{var}_merge"), format!("{id}_merge"));
                let _ = writeln!(
                    out,
                    "    {merge_var} = BashOperator(task_id={}, bash_command=command({}, {}))",
                    py(&merge_id),
                    py(&stage.cmd),
                    args(&merge)
                );
                let _ = writeln!(out, "    {var} >> {merge_var}");
                last.insert(name, merge_var);
            }
        }
        for up in &upstream[name.as_str()] {
            let _ = writeln!(out, "    {} >> {var}", last[up]);
        }
    }
    // A sweep ends, as `graft run` does, by ranking its evaluations into `X.sweep.json`.
    let evaluations: Vec<&String> = order
        .iter()
        .filter(|n| !pipeline.stages[*n].combination.is_empty() && pipeline.stages[*n].cmd.ends_with("graft-evaluate"))
        .collect();
    if !evaluations.is_empty() {
        let mut args = vec![py("sweep"), py(source)];
        if let Some(s) = &pipeline.schedule {
            args.extend([py("--set"), py(&format!("params.{}={PARTITION}", s.partition))]);
        }
        let _ = writeln!(
            out,
            "    sweep_ranking = BashOperator(task_id=\"sweep_ranking\", bash_command=command(\"graft\", {}))",
            args.join(", ")
        );
        for e in evaluations {
            let _ = writeln!(out, "    {} >> sweep_ranking", last[e.as_str()]);
        }
    }
    out
}

/// Quotes a word for POSIX shells when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dag_lists_each_stage_with_its_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(&p, "version: 1\nstages:\n  b: {cmd: graft-b, deps: [o/a/x], outs: [o/b]}\n  a: {cmd: graft-a, outs: [o/a]}\n  c: {cmd: graft-c, deps: [o/a, o/b]}\n").unwrap();
        assert_eq!(dag(&p, DagFormat::Text).unwrap(), "a <- \nb <- a\nc <- a, b\n");
        let dot = dag(&p, DagFormat::Dot).unwrap();
        assert!(dot.contains("\"a\" -> \"b\";") && dot.contains("\"b\" -> \"c\";"), "{dot}");
        let mermaid = dag(&p, DagFormat::Mermaid).unwrap();
        assert!(mermaid.contains("    s0[\"a: graft-a\"]") && mermaid.contains("    s0 --> s2\n"), "{mermaid}");
    }

    #[test]
    fn expanded_stage_names_become_plain_make_targets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(&p, "version: 1\nmatrix: {c: [1, 10]}\nstages:\n  h: {cmd: graft-h, args: {c: '${matrix.c}'}, outs: ['h${matrix.c}']}\n").unwrap();
        let make = export(&p, Format::Make).unwrap();
        assert!(make.contains("all: h_c_1_ h_c_10_\n"), "{make}");
        assert!(make.contains("h_c_10_: h10\nh10 &: \n\t$(GRAFT_BIN)graft-h --c 10\n"), "{make}");
    }

    #[test]
    fn hostile_values_are_quoted_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(
            &p,
            "version: 1\nparams: {v: x}\nstages:\n  a: {cmd: printf, args: {v: '${params.v}'}, outs: ['o #1']}\n",
        )
        .unwrap();
        let hostile = "1\n\ttouch injected; $(touch injected2) `touch injected3` ' \" \\";
        let quoted = shell_quote(hostile);
        let out = std::process::Command::new("sh").arg("-c").arg(format!("printf %s {quoted}")).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), hostile, "sh receives the value intact");
        let make = export(&p, Format::Make).unwrap();
        assert!(make.contains("o\\ \\#1 &:"), "{make}");
        std::fs::write(
            &p,
            format!(
                "version: 1\nstages:\n  a: {{cmd: printf, args: {{v: {}}}}}\n",
                serde_json::to_string(hostile).unwrap()
            ),
        )
        .unwrap();
        let err = export(&p, Format::Make).unwrap_err().to_string();
        assert!(err.contains("stage `a`") && err.contains("control character"), "{err}");
        let sh = export(&p, Format::Sh).unwrap();
        assert!(sh.contains(&quoted), "{sh}");
        std::fs::write(&p, "version: 1\nstages:\n  a: {cmd: x, outs: ['a:b']}\n").unwrap();
        assert!(export(&p, Format::Make).unwrap_err().to_string().contains("make reads as syntax"));
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("runs/a.arrow"), "runs/a.arrow");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
    }
}
