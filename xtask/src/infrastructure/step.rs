//! The external commands of a deployment as data ([`Step`]), and the [`Runner`] that runs
//! them or, in a dry run, only prints them.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// One external command, optionally fed by another's output (`a | b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// A command whose standard output becomes this one's standard input.
    pub stdin_from: Option<Box<Step>>,
}

impl Step {
    /// `program` with `args`.
    pub fn new(program: &str, args: &[&str]) -> Step {
        Step {
            program: program.to_owned(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            stdin_from: None,
        }
    }

    /// An AWS CLI command, with the region and profile of the deployment.
    pub fn aws(region: Option<&str>, profile: Option<&str>, words: &[&str]) -> Step {
        let mut step = Step::new("aws", words);
        if let Some(region) = region {
            step.args.extend(["--region".to_owned(), region.to_owned()]);
        }
        if let Some(profile) = profile {
            step.args
                .extend(["--profile".to_owned(), profile.to_owned()]);
        }
        step
    }

    /// `self | next`.
    pub fn piped_into(self, mut next: Step) -> Step {
        next.stdin_from = Some(Box::new(self));
        next
    }

    fn command(&self, root: &Path) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).current_dir(root);
        command
    }
}

/// The command as a shell would read it, for progress lines and dry runs.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.stdin_from {
            write!(f, "{source} | ")?;
        }
        f.write_str(&self.program)?;
        for arg in &self.args {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c));
            if plain {
                write!(f, " {arg}")?;
            } else {
                write!(f, " '{}'", arg.replace('\'', r"'\''"))?;
            }
        }
        Ok(())
    }
}

/// Runs steps from the workspace root, or only prints them in a dry run.
pub struct Runner<'a> {
    root: &'a Path,
    dry_run: bool,
}

impl<'a> Runner<'a> {
    /// A runner from `root`; `dry_run` prints instead of running.
    pub fn new(root: &'a Path, dry_run: bool) -> Self {
        Self { root, dry_run }
    }

    /// Whether this is a dry run.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Runs `step`, failing if it fails.
    pub fn run(&self, step: &Step) -> Result<()> {
        eprintln!("xtask: deploy: {step}");
        if self.dry_run {
            return Ok(());
        }
        let output = self.output(step, false)?;
        crate::check(output.status, &step.to_string())
    }

    /// The trimmed standard output of `step`; `placeholder` in a dry run.
    pub fn capture(&self, step: &Step, placeholder: &str) -> Result<String> {
        eprintln!("xtask: deploy: {step}");
        if self.dry_run {
            return Ok(placeholder.to_owned());
        }
        let output = self.output(step, true)?;
        crate::check(output.status, &step.to_string())?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if text.is_empty() || text == "None" {
            bail!("`{step}` printed nothing");
        }
        Ok(text)
    }

    /// Whether `step` succeeds (a question, such as whether an image exists); a dry run
    /// assumes it does not, as for a first create from nothing.
    pub fn succeeds(&self, step: &Step) -> Result<bool> {
        eprintln!("xtask: deploy: {step}");
        if self.dry_run {
            return Ok(false);
        }
        Ok(self.output(step, true)?.status.success())
    }

    /// The status of the stack `describe` asks about, `None` if it does not exist (and in
    /// a dry run, which plans a first create).
    pub fn stack_status(&self, describe: &Step) -> Result<Option<String>> {
        eprintln!("xtask: deploy: {describe}");
        if self.dry_run {
            return Ok(None);
        }
        let output = self.output(describe, true)?;
        if output.status.success() {
            return Ok(Some(
                String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            ));
        }
        let error = String::from_utf8_lossy(&output.stderr);
        if error.contains("does not exist") {
            return Ok(None);
        }
        bail!("`{describe}` failed: {}", error.trim())
    }

    fn output(&self, step: &Step, capture: bool) -> Result<std::process::Output> {
        let input = match &step.stdin_from {
            Some(source) => {
                let output = self.output(source, true)?;
                crate::check(output.status, &source.to_string())?;
                Some(output.stdout)
            }
            None => None,
        };
        let mut command = step.command(self.root);
        if capture {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        if input.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {} (is it installed?)", step.program))?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(&input)?;
        }
        child
            .wait_with_output()
            .with_context(|| format!("{} did not finish", step.program))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_their_quotes_when_printed() {
        let step = Step::aws(
            Some("eu-west-1"),
            None,
            &["cloudformation", "describe-stacks", "--query", "a[?k=='v']"],
        );
        assert_eq!(
            step.to_string(),
            "aws cloudformation describe-stacks --query 'a[?k=='\\''v'\\'']' --region eu-west-1"
        );
    }

    #[test]
    fn a_pipe_feeds_one_command_into_the_next() {
        let root = std::env::temp_dir();
        let runner = Runner::new(&root, false);
        let step = Step::new("echo", &["through the pipe"]).piped_into(Step::new("cat", &[]));
        assert_eq!(step.to_string(), "echo 'through the pipe' | cat");
        assert_eq!(runner.capture(&step, "").unwrap(), "through the pipe");
    }

    #[test]
    fn a_dry_run_runs_nothing_and_plans_a_first_create() {
        let root = std::env::temp_dir();
        let runner = Runner::new(&root, true);
        let fails = Step::new("false", &[]);
        runner.run(&fails).unwrap();
        assert_eq!(runner.capture(&fails, "<Output>").unwrap(), "<Output>");
        assert!(!runner.succeeds(&Step::new("true", &[])).unwrap());
        assert_eq!(runner.stack_status(&fails).unwrap(), None);
    }
}
