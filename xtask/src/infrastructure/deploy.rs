//! `cargo xtask deploy`: upload the consumer package, package and deploy the templates
//! with the AWS CLI, then upload the pipeline file and its plugins to the plugin bucket.
//! Every external command is a `Step`, so the plan can be printed (`--dry-run`) and tested.

use std::fmt;
use std::path::Path;
use std::process::Command as Process;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::ROOT_TEMPLATE;
use crate::pipeline_file::PIPELINE_FILE;

/// The root template with its nested templates' paths rewritten to S3 URLs.
const PACKAGED_TEMPLATE: &str = "target/infrastructure/adtrack.packaged.yaml";
/// The consumer package `cargo xtask package` writes.
const CONSUMER_PACKAGE: &str = "target/lambda/adtrack-consumer/bootstrap.zip";

/// `cargo xtask deploy`: where and what to deploy. Needs the AWS CLI and credentials.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Name of the CloudFormation stack.
    #[arg(long, default_value = "adtrack")]
    pub stack_name: String,
    /// AWS region; unset, the AWS CLI's configured region.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// AWS CLI profile; unset, the default credentials.
    #[arg(long, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// Existing S3 bucket (same region) for the packaged templates and the consumer package.
    #[arg(long)]
    pub artifact_bucket: String,
    /// Host container image, built from host/Dockerfile and pushed, e.g. an ECR URI with a tag.
    #[arg(long)]
    pub image_uri: String,
    /// EnvironmentName of the templates: prefix of resource names and log groups.
    #[arg(long, default_value = "adtrack")]
    pub environment_name: String,
    /// More template parameters, e.g. `--parameter StreamMode=PROVISIONED` (repeatable).
    #[arg(long = "parameter", value_name = "KEY=VALUE")]
    pub parameters: Vec<String>,
    /// Print the commands instead of running them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Uploads the consumer package, packages and deploys the templates, then uploads the
/// pipeline file and the plugins it names to the stack's plugin bucket.
pub fn deploy(root: &Path, args: &DeployArgs) -> Result<()> {
    let package_key = match std::fs::read(root.join(CONSUMER_PACKAGE)) {
        Ok(package) => consumer_key(&args.stack_name, &package),
        Err(_) if args.dry_run => format!("{}/consumer/bootstrap-<hash>.zip", args.stack_name),
        Err(error) => {
            return Err(error).with_context(|| {
                format!("cannot read {CONSUMER_PACKAGE}; build it with `cargo xtask package`")
            });
        }
    };
    let plugins = crate::pipeline_file::plugin_paths(root)?;
    for plugin in &plugins {
        if !args.dry_run && !root.join(plugin).is_file() {
            bail!("{plugin} is missing; build the plugins with `cargo xtask plugins`");
        }
    }
    std::fs::create_dir_all(root.join("target/infrastructure"))
        .context("cannot create target/infrastructure")?;

    for step in deploy_steps(args, &package_key)? {
        execute(root, &step, args.dry_run)?;
    }
    let query = plugin_bucket_query(args);
    let bucket = if args.dry_run {
        eprintln!("xtask: deploy: {query}");
        "<PluginBucketName>".to_owned()
    } else {
        capture(root, &query)?
    };
    for step in plugin_upload_steps(args, &bucket, &plugins) {
        execute(root, &step, args.dry_run)?;
    }
    execute(root, &outputs_step(args), args.dry_run)?;
    if args.dry_run {
        eprintln!("xtask: deploy: dry run, nothing was run");
    } else {
        eprintln!("xtask: deploy: done; the admin API token is in the AdminTokenSecretArn secret");
    }
    Ok(())
}

/// One external command, kept as data so that the deploy plan can be printed and tested.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    program: String,
    args: Vec<String>,
}

impl Step {
    /// An AWS CLI command, with the region and profile of the deployment.
    fn aws(args: &DeployArgs, words: &[&str]) -> Step {
        let mut all: Vec<String> = words.iter().map(|word| (*word).to_owned()).collect();
        if let Some(region) = &args.region {
            all.extend(["--region".to_owned(), region.clone()]);
        }
        if let Some(profile) = &args.profile {
            all.extend(["--profile".to_owned(), profile.clone()]);
        }
        Step {
            program: "aws".to_owned(),
            args: all,
        }
    }
}

/// The command as a shell would read it, for progress lines and dry runs.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// Uploading the consumer package, packaging the nested templates and deploying the stack.
fn deploy_steps(args: &DeployArgs, consumer_key: &str) -> Result<Vec<Step>> {
    let bucket = args.artifact_bucket.as_str();
    let template_prefix = format!("{}/templates", args.stack_name);
    let mut overrides = vec![
        format!("EnvironmentName={}", args.environment_name),
        format!("HostImageUri={}", args.image_uri),
        format!("ConsumerCodeBucket={bucket}"),
        format!("ConsumerCodeKey={consumer_key}"),
    ];
    for parameter in &args.parameters {
        match parameter.split_once('=') {
            Some((key, _)) if !key.is_empty() => overrides.push(parameter.clone()),
            _ => bail!("--parameter {parameter:?} is not KEY=VALUE"),
        }
    }
    let mut deploy = Step::aws(
        args,
        &[
            "cloudformation",
            "deploy",
            "--template-file",
            PACKAGED_TEMPLATE,
            "--stack-name",
            &args.stack_name,
            "--s3-bucket",
            bucket,
            "--s3-prefix",
            &template_prefix,
            "--capabilities",
            "CAPABILITY_NAMED_IAM",
            "--no-fail-on-empty-changeset",
        ],
    );
    deploy.args.push("--parameter-overrides".to_owned());
    deploy.args.extend(overrides);
    Ok(vec![
        Step::aws(
            args,
            &[
                "s3",
                "cp",
                CONSUMER_PACKAGE,
                &format!("s3://{bucket}/{consumer_key}"),
            ],
        ),
        Step::aws(
            args,
            &[
                "cloudformation",
                "package",
                "--template-file",
                ROOT_TEMPLATE,
                "--s3-bucket",
                bucket,
                "--s3-prefix",
                &template_prefix,
                "--output-template-file",
                PACKAGED_TEMPLATE,
            ],
        ),
        deploy,
    ])
}

/// Asks the deployed stack for its plugin bucket's name.
fn plugin_bucket_query(args: &DeployArgs) -> Step {
    describe_outputs(
        args,
        "Stacks[0].Outputs[?OutputKey=='PluginBucketName'].OutputValue",
        "text",
    )
}

/// `aws cloudformation describe-stacks` of the stack, with a JMESPath `query` over it.
fn describe_outputs(args: &DeployArgs, query: &str, output: &str) -> Step {
    Step::aws(
        args,
        &[
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            &args.stack_name,
            "--query",
            query,
            "--output",
            output,
        ],
    )
}

/// Copies the pipeline file and its plugins into the bucket under the same relative
/// paths, so the pipeline file's plugin paths hold there too.
fn plugin_upload_steps(args: &DeployArgs, bucket: &str, plugins: &[String]) -> Vec<Step> {
    std::iter::once(PIPELINE_FILE)
        .chain(plugins.iter().map(String::as_str))
        .map(|path| Step::aws(args, &["s3", "cp", path, &format!("s3://{bucket}/{path}")]))
        .collect()
}

/// Prints the stack's outputs (endpoint URL, stream, table, bucket, queue).
fn outputs_step(args: &DeployArgs) -> Step {
    describe_outputs(args, "Stacks[0].Outputs", "table")
}

/// The S3 key of a consumer package: named by its content, so that new code is a new
/// key and CloudFormation updates the function (the same key would leave it as it is).
fn consumer_key(stack_name: &str, package: &[u8]) -> String {
    // 64-bit FNV-1a: stable across Rust releases, unlike std's DefaultHasher.
    let hash = package
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{stack_name}/consumer/bootstrap-{hash:016x}.zip")
}

fn execute(root: &Path, step: &Step, dry_run: bool) -> Result<()> {
    eprintln!("xtask: deploy: {step}");
    if dry_run {
        return Ok(());
    }
    let status = Process::new(&step.program)
        .args(&step.args)
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot start {} (is the AWS CLI installed?)", step.program))?;
    crate::check(status, &step.to_string())
}

/// Runs a command and returns its standard output, trimmed.
fn capture(root: &Path, step: &Step) -> Result<String> {
    eprintln!("xtask: deploy: {step}");
    let output = Process::new(&step.program)
        .args(&step.args)
        .current_dir(root)
        .output()
        .with_context(|| format!("cannot start {}", step.program))?;
    crate::check(output.status, &step.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if text.is_empty() || text == "None" {
        bail!("the stack has no PluginBucketName output");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DeployArgs {
        DeployArgs {
            stack_name: "adtrack".to_owned(),
            region: Some("eu-west-1".to_owned()),
            profile: None,
            artifact_bucket: "my-artifacts".to_owned(),
            image_uri: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/adtrack-host:7".to_owned(),
            environment_name: "adtrack".to_owned(),
            parameters: vec!["StreamMode=PROVISIONED".to_owned()],
            dry_run: false,
        }
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::to_string).collect()
    }

    #[test]
    fn deploy_uploads_the_consumer_packages_the_templates_and_deploys_them() {
        let steps = deploy_steps(&args(), "adtrack/consumer/bootstrap-00ff.zip").unwrap();
        assert_eq!(
            lines(&steps),
            [
                "aws s3 cp target/lambda/adtrack-consumer/bootstrap.zip \
                 s3://my-artifacts/adtrack/consumer/bootstrap-00ff.zip --region eu-west-1",
                "aws cloudformation package --template-file infrastructure/adtrack.yaml \
                 --s3-bucket my-artifacts --s3-prefix adtrack/templates \
                 --output-template-file target/infrastructure/adtrack.packaged.yaml \
                 --region eu-west-1",
                "aws cloudformation deploy \
                 --template-file target/infrastructure/adtrack.packaged.yaml \
                 --stack-name adtrack --s3-bucket my-artifacts --s3-prefix adtrack/templates \
                 --capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset \
                 --region eu-west-1 --parameter-overrides EnvironmentName=adtrack \
                 HostImageUri=123456789012.dkr.ecr.eu-west-1.amazonaws.com/adtrack-host:7 \
                 ConsumerCodeBucket=my-artifacts \
                 ConsumerCodeKey=adtrack/consumer/bootstrap-00ff.zip \
                 StreamMode=PROVISIONED",
            ]
        );
    }

    #[test]
    fn plugins_are_uploaded_under_the_paths_the_pipeline_file_names() {
        let plugins = vec!["target/plugins/filter.wasm".to_owned()];
        let mut args = args();
        args.profile = Some("prod".to_owned());
        assert_eq!(
            lines(&plugin_upload_steps(&args, "plugins-bucket", &plugins)),
            [
                "aws s3 cp pipeline.toml s3://plugins-bucket/pipeline.toml \
                 --region eu-west-1 --profile prod",
                "aws s3 cp target/plugins/filter.wasm \
                 s3://plugins-bucket/target/plugins/filter.wasm --region eu-west-1 --profile prod",
            ]
        );
    }

    #[test]
    fn queries_keep_their_quotes_when_printed() {
        assert_eq!(
            plugin_bucket_query(&args()).to_string(),
            "aws cloudformation describe-stacks --stack-name adtrack --query \
             'Stacks[0].Outputs[?OutputKey=='\\''PluginBucketName'\\''].OutputValue' \
             --output text --region eu-west-1"
        );
    }

    #[test]
    fn a_parameter_without_a_key_is_refused() {
        let mut args = args();
        args.parameters = vec!["=x".to_owned()];
        assert!(deploy_steps(&args, "key").is_err());
        args.parameters = vec!["StreamMode".to_owned()];
        assert!(deploy_steps(&args, "key").is_err());
    }

    #[test]
    fn the_consumer_key_changes_with_the_package() {
        assert_eq!(
            consumer_key("adtrack", b""),
            "adtrack/consumer/bootstrap-cbf29ce484222325.zip"
        );
        assert_eq!(
            consumer_key("adtrack", b"a"),
            "adtrack/consumer/bootstrap-af63dc4c8601ec8c.zip"
        );
    }
}
