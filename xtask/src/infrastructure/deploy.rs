//! `cargo xtask deploy`: the whole deployment in code, for a first create, an update, and
//! after a failed first create. In order: the bootstrap stack (ECR repository and artifact
//! bucket), the host image built for the chosen architecture and pushed, the checked
//! consumer package, the packaged root stack, then the pipeline file and its plugins.
//! Every external command is a [`Step`], so that `--dry-run` prints the plan of a first
//! create from nothing without calling AWS, and the plan can be tested.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::step::{Runner, Step};
use super::{BOOTSTRAP_TEMPLATE, ROOT_TEMPLATE};
use crate::lambda::Architecture;
use crate::package_check;
use crate::pipeline_file::PIPELINE_FILE;

/// The root template with its nested templates' paths rewritten to S3 URLs.
const PACKAGED_TEMPLATE: &str = "target/infrastructure/adtrack.packaged.yaml";
/// The consumer package `cargo xtask package` writes and checks.
const CONSUMER_PACKAGE: &str = "target/lambda/adtrack-consumer/bootstrap.zip";
/// The host image's build file.
const DOCKERFILE: &str = "host/Dockerfile";

/// `cargo xtask deploy`: where and what to deploy. Needs the AWS CLI, credentials and
/// (to build the host image) Docker with buildx.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Name of the CloudFormation stack; the bootstrap stack is NAME-bootstrap.
    #[arg(long, default_value = "adtrack")]
    pub stack_name: String,
    /// AWS region; unset, the AWS CLI's configured region.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// AWS CLI profile; unset, the default credentials.
    #[arg(long, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// CPU architecture of the host image and the consumer (Graviton: arm64).
    #[arg(long, value_enum, default_value_t)]
    pub architecture: Architecture,
    /// An existing image to deploy instead of building one (e.g. a tag already in ECR).
    #[arg(long)]
    pub image_uri: Option<String>,
    /// EnvironmentName of the templates: prefix of resource names and log groups.
    #[arg(long, default_value = "adtrack")]
    pub environment_name: String,
    /// More root template parameters, e.g. `--parameter CertificateArn=arn:...` (repeatable).
    #[arg(long = "parameter", value_name = "KEY=VALUE")]
    pub parameters: Vec<String>,
    /// Print the plan of a first create from nothing instead of running anything.
    #[arg(long)]
    pub dry_run: bool,
}

/// Deploys everything, in order; see the module documentation.
pub fn deploy(root: &Path, args: &DeployArgs) -> Result<()> {
    let runner = Runner::new(root, args.dry_run);
    let package_key = consumer_package(root, args)?;
    let plugins = crate::pipeline_file::plugin_paths(root)?;
    for plugin in &plugins {
        if !args.dry_run && !root.join(plugin).is_file() {
            bail!("{plugin} is missing; build the plugins with `cargo xtask plugins`");
        }
    }
    std::fs::create_dir_all(root.join("target/infrastructure"))
        .context("cannot create target/infrastructure")?;

    let bootstrap = bootstrap_stack_name(args);
    prepare_stack(&runner, args, &bootstrap)?;
    runner.run(&bootstrap_deploy_step(args))?;
    let repository = runner.capture(
        &stack_output(args, &bootstrap, "RepositoryUri"),
        &format!(
            "<account>.dkr.ecr.<region>.amazonaws.com/{}-host",
            args.environment_name
        ),
    )?;
    let artifact_bucket = runner.capture(
        &stack_output(args, &bootstrap, "ArtifactBucketName"),
        "<ArtifactBucketName>",
    )?;

    let image_uri = match &args.image_uri {
        Some(image) => image.clone(),
        None => build_image(&runner, root, args, &repository)?,
    };

    prepare_stack(&runner, args, &args.stack_name)?;
    for step in deploy_steps(args, &artifact_bucket, &package_key, &image_uri)? {
        runner.run(&step)?;
    }
    let bucket = runner.capture(
        &stack_output(args, &args.stack_name, "PluginBucketName"),
        "<PluginBucketName>",
    )?;
    for step in plugin_upload_steps(args, &bucket, &plugins) {
        runner.run(&step)?;
    }
    runner.run(&outputs_step(args))?;
    if args.dry_run {
        eprintln!("xtask: deploy: dry run, nothing was run");
    } else {
        eprintln!(
            "xtask: deploy: done; the admin API token is in the AdminTokenSecretArn secret, \
             the admin API at InternalUrl (inside the VPC only)"
        );
    }
    Ok(())
}

/// The S3 key of the checked consumer package; refuses a package `cargo xtask package`
/// has not run under the Lambda emulator, or built for another architecture.
fn consumer_package(root: &Path, args: &DeployArgs) -> Result<String> {
    let zip = root.join(CONSUMER_PACKAGE);
    let checked = std::fs::read(&zip)
        .with_context(|| {
            format!(
                "cannot read {CONSUMER_PACKAGE}; build and check it with \
                 `cargo xtask package --architecture {}`",
                args.architecture.name()
            )
        })
        .and_then(|package| {
            package_check::ensure_verified(&zip, &package, args.architecture)?;
            Ok(consumer_key(&args.stack_name, &package))
        });
    match checked {
        Ok(key) => {
            eprintln!(
                "xtask: deploy: {CONSUMER_PACKAGE}: checked under the Lambda emulator ({})",
                args.architecture.name()
            );
            Ok(key)
        }
        Err(error) if args.dry_run => {
            eprintln!("xtask: deploy: (a real deploy would stop here: {error:#})");
            eprintln!(
                "xtask: deploy: cargo xtask package --architecture {}",
                args.architecture.name()
            );
            Ok(format!(
                "{}/consumer/bootstrap-<digest>.zip",
                args.stack_name
            ))
        }
        Err(error) => Err(error),
    }
}

/// The S3 key of a consumer package: named by its content, so that new code is a new
/// key and CloudFormation updates the function (the same key would leave it as it is).
fn consumer_key(stack_name: &str, package: &[u8]) -> String {
    format!(
        "{stack_name}/consumer/bootstrap-{}.zip",
        package_check::digest(package)
    )
}

fn bootstrap_stack_name(args: &DeployArgs) -> String {
    format!("{}-bootstrap", args.stack_name)
}

/// What a stack's state asks for before `cloudformation deploy`: nothing for a new or a
/// healthy stack; deleting a failed first create (ROLLBACK_COMPLETE cannot be updated);
/// a refusal while another operation runs or a stack needs a person.
fn prepare_stack(runner: &Runner, args: &DeployArgs, stack: &str) -> Result<()> {
    let status = runner.stack_status(&stack_status_step(args, stack))?;
    if runner.dry_run() {
        eprintln!(
            "xtask: deploy:   (if {stack} is ROLLBACK_COMPLETE, a failed first create: {}; \
             if an operation is in progress or it is *_FAILED: stop)",
            delete_steps(args, stack)
                .iter()
                .map(Step::to_string)
                .collect::<Vec<_>>()
                .join(" && ")
        );
    }
    match stack_action(status.as_deref()) {
        StackAction::Deploy => Ok(()),
        StackAction::DeleteFailedCreate => {
            eprintln!(
                "xtask: deploy: {stack} is ROLLBACK_COMPLETE (its first create failed): \
                 deleting it before creating it again"
            );
            for step in delete_steps(args, stack) {
                runner.run(&step)?;
            }
            Ok(())
        }
        StackAction::Refuse(reason) => bail!("stack {stack}: {reason}"),
    }
}

/// What to do with a stack in a given state (`None`: it does not exist).
#[derive(Debug, PartialEq, Eq)]
enum StackAction {
    Deploy,
    DeleteFailedCreate,
    Refuse(String),
}

fn stack_action(status: Option<&str>) -> StackAction {
    match status {
        None | Some("REVIEW_IN_PROGRESS") => StackAction::Deploy,
        Some("ROLLBACK_COMPLETE") => StackAction::DeleteFailedCreate,
        Some(status) if status.ends_with("_IN_PROGRESS") => StackAction::Refuse(format!(
            "{status}: another operation is running; deploy again when it has finished"
        )),
        Some(status) if status.ends_with("_FAILED") => StackAction::Refuse(format!(
            "{status}: needs a person (see the stack's events; for UPDATE_ROLLBACK_FAILED, \
             `aws cloudformation continue-update-rollback`)"
        )),
        Some(_) => StackAction::Deploy,
    }
}

fn stack_status_step(args: &DeployArgs, stack: &str) -> Step {
    Step::aws(
        args.region.as_deref(),
        args.profile.as_deref(),
        &[
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            stack,
            "--query",
            "Stacks[0].StackStatus",
            "--output",
            "text",
        ],
    )
}

fn delete_steps(args: &DeployArgs, stack: &str) -> Vec<Step> {
    let aws = |words: &[&str]| Step::aws(args.region.as_deref(), args.profile.as_deref(), words);
    vec![
        aws(&["cloudformation", "delete-stack", "--stack-name", stack]),
        aws(&[
            "cloudformation",
            "wait",
            "stack-delete-complete",
            "--stack-name",
            stack,
        ]),
    ]
}

fn bootstrap_deploy_step(args: &DeployArgs) -> Step {
    let mut step = Step::aws(
        args.region.as_deref(),
        args.profile.as_deref(),
        &[
            "cloudformation",
            "deploy",
            "--template-file",
            BOOTSTRAP_TEMPLATE,
            "--stack-name",
            &bootstrap_stack_name(args),
            "--no-fail-on-empty-changeset",
        ],
    );
    step.args.extend([
        "--parameter-overrides".to_owned(),
        format!("EnvironmentName={}", args.environment_name),
    ]);
    step
}

/// Builds the host image for the deployment's architecture and pushes it, unless the
/// repository has it already (tags are immutable); returns its URI.
fn build_image(
    runner: &Runner,
    root: &Path,
    args: &DeployArgs,
    repository: &str,
) -> Result<String> {
    let tag = image_tag(root, args.architecture, args.dry_run)?;
    let image = format!("{repository}:{tag}");
    let exists = runner.succeeds(&image_exists_step(args, repository, &tag))?;
    if exists {
        eprintln!("xtask: deploy: {image} is in the repository already");
        return Ok(image);
    }
    for step in image_steps(args, repository, &tag) {
        runner.run(&step)?;
    }
    Ok(image)
}

/// The image tag: the commit and the architecture. A tree with changes gets a tag of its
/// own, as the same commit tag would then name different images.
fn image_tag(root: &Path, architecture: Architecture, dry_run: bool) -> Result<String> {
    let git = |args: &[&str]| -> Result<String> {
        let output = std::process::Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .context("cannot run git")?;
        if !output.status.success() {
            bail!("git {} failed", args.join(" "));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let changed = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    let tag = match (changed, dry_run) {
        (false, _) => format!("{commit}-{}", architecture.name()),
        (true, true) => format!("{commit}-changed-<time>-{}", architecture.name()),
        (true, false) => {
            let seconds = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            format!("{commit}-changed-{seconds}-{}", architecture.name())
        }
    };
    Ok(tag)
}

fn image_exists_step(args: &DeployArgs, repository: &str, tag: &str) -> Step {
    let name = repository
        .split_once('/')
        .map_or(repository, |(_, name)| name);
    Step::aws(
        args.region.as_deref(),
        args.profile.as_deref(),
        &[
            "ecr",
            "describe-images",
            "--repository-name",
            name,
            "--image-ids",
            &format!("imageTag={tag}"),
        ],
    )
}

/// Logging Docker in to the repository's registry, then building and pushing the image
/// for the deployment's architecture.
fn image_steps(args: &DeployArgs, repository: &str, tag: &str) -> Vec<Step> {
    let registry = repository
        .split_once('/')
        .map_or(repository, |(host, _)| host);
    let login = Step::aws(
        args.region.as_deref(),
        args.profile.as_deref(),
        &["ecr", "get-login-password"],
    )
    .piped_into(Step::new(
        "docker",
        &["login", "--username", "AWS", "--password-stdin", registry],
    ));
    let build = Step::new(
        "docker",
        &[
            "buildx",
            "build",
            "--platform",
            args.architecture.docker_platform(),
            "--file",
            DOCKERFILE,
            "--tag",
            &format!("{repository}:{tag}"),
            "--provenance=false",
            "--push",
            ".",
        ],
    );
    vec![login, build]
}

/// Uploading the consumer package, packaging the nested templates and deploying the stack.
fn deploy_steps(
    args: &DeployArgs,
    bucket: &str,
    consumer_key: &str,
    image_uri: &str,
) -> Result<Vec<Step>> {
    let aws = |words: &[&str]| Step::aws(args.region.as_deref(), args.profile.as_deref(), words);
    let template_prefix = format!("{}/templates", args.stack_name);
    let mut overrides = vec![
        format!("EnvironmentName={}", args.environment_name),
        format!("Architecture={}", args.architecture.name()),
        format!("HostImageUri={image_uri}"),
        format!("ConsumerCodeBucket={bucket}"),
        format!("ConsumerCodeKey={consumer_key}"),
    ];
    for parameter in &args.parameters {
        match parameter.split_once('=') {
            Some((
                "Architecture" | "HostImageUri" | "ConsumerCodeBucket" | "ConsumerCodeKey",
                _,
            )) => {
                bail!(
                    "--parameter {parameter:?}: xtask sets it (see --architecture and --image-uri)"
                )
            }
            Some((key, _)) if !key.is_empty() => overrides.push(parameter.clone()),
            _ => bail!("--parameter {parameter:?} is not KEY=VALUE"),
        }
    }
    let mut deploy = aws(&[
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
    ]);
    deploy.args.push("--parameter-overrides".to_owned());
    deploy.args.extend(overrides);
    Ok(vec![
        aws(&[
            "s3",
            "cp",
            CONSUMER_PACKAGE,
            &format!("s3://{bucket}/{consumer_key}"),
        ]),
        aws(&[
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
        ]),
        deploy,
    ])
}

/// Asks a stack for one of its outputs.
fn stack_output(args: &DeployArgs, stack: &str, output: &str) -> Step {
    Step::aws(
        args.region.as_deref(),
        args.profile.as_deref(),
        &[
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            stack,
            "--query",
            &format!("Stacks[0].Outputs[?OutputKey=='{output}'].OutputValue"),
            "--output",
            "text",
        ],
    )
}

/// Copies the pipeline file and its plugins into the bucket under the same relative
/// paths, so the pipeline file's plugin paths hold there too.
fn plugin_upload_steps(args: &DeployArgs, bucket: &str, plugins: &[String]) -> Vec<Step> {
    std::iter::once(PIPELINE_FILE)
        .chain(plugins.iter().map(String::as_str))
        .map(|path| {
            Step::aws(
                args.region.as_deref(),
                args.profile.as_deref(),
                &["s3", "cp", path, &format!("s3://{bucket}/{path}")],
            )
        })
        .collect()
}

/// Prints the stack's outputs (endpoint URLs, stream, table, buckets, queue, alarms).
fn outputs_step(args: &DeployArgs) -> Step {
    Step::aws(
        args.region.as_deref(),
        args.profile.as_deref(),
        &[
            "cloudformation",
            "describe-stacks",
            "--stack-name",
            &args.stack_name,
            "--query",
            "Stacks[0].Outputs",
            "--output",
            "table",
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DeployArgs {
        DeployArgs {
            stack_name: "adtrack".to_owned(),
            region: Some("eu-west-1".to_owned()),
            profile: None,
            architecture: Architecture::Arm64,
            image_uri: None,
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
        let steps = deploy_steps(
            &args(),
            "my-artifacts",
            "adtrack/consumer/bootstrap-00ff.zip",
            "1.dkr.ecr.eu-west-1.amazonaws.com/adtrack-host:abc-arm64",
        )
        .unwrap();
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
                 Architecture=arm64 \
                 HostImageUri=1.dkr.ecr.eu-west-1.amazonaws.com/adtrack-host:abc-arm64 \
                 ConsumerCodeBucket=my-artifacts \
                 ConsumerCodeKey=adtrack/consumer/bootstrap-00ff.zip \
                 StreamMode=PROVISIONED",
            ]
        );
    }

    #[test]
    fn the_image_is_built_and_pushed_for_the_chosen_architecture() {
        let steps = image_steps(
            &args(),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/adtrack-host",
            "abc-arm64",
        );
        assert_eq!(
            lines(&steps),
            [
                "aws ecr get-login-password --region eu-west-1 | docker login --username AWS \
                 --password-stdin 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "docker buildx build --platform linux/arm64 --file host/Dockerfile \
                 --tag 123456789012.dkr.ecr.eu-west-1.amazonaws.com/adtrack-host:abc-arm64 \
                 --provenance=false --push .",
            ]
        );
        let mut intel = args();
        intel.architecture = Architecture::X86_64;
        assert!(lines(&image_steps(&intel, "r/adtrack-host", "t"))[1].contains("linux/amd64"));
    }

    #[test]
    fn a_failed_first_create_is_deleted_and_busy_or_broken_stacks_are_refused() {
        assert_eq!(stack_action(None), StackAction::Deploy);
        assert_eq!(stack_action(Some("UPDATE_COMPLETE")), StackAction::Deploy);
        assert_eq!(
            stack_action(Some("UPDATE_ROLLBACK_COMPLETE")),
            StackAction::Deploy
        );
        assert_eq!(
            stack_action(Some("ROLLBACK_COMPLETE")),
            StackAction::DeleteFailedCreate
        );
        assert!(matches!(
            stack_action(Some("UPDATE_IN_PROGRESS")),
            StackAction::Refuse(_)
        ));
        assert!(matches!(
            stack_action(Some("UPDATE_ROLLBACK_FAILED")),
            StackAction::Refuse(_)
        ));
        assert_eq!(
            lines(&delete_steps(&args(), "adtrack")),
            [
                "aws cloudformation delete-stack --stack-name adtrack --region eu-west-1",
                "aws cloudformation wait stack-delete-complete --stack-name adtrack \
                 --region eu-west-1",
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
    fn parameters_xtask_sets_or_without_a_key_are_refused() {
        let mut args = args();
        for bad in ["=x", "StreamMode", "Architecture=x86-64", "HostImageUri=x"] {
            args.parameters = vec![bad.to_owned()];
            assert!(deploy_steps(&args, "b", "key", "image").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_consumer_key_changes_with_the_package() {
        assert_eq!(
            consumer_key("adtrack", b""),
            "adtrack/consumer/bootstrap-cbf29ce484222325.zip"
        );
        assert_ne!(consumer_key("adtrack", b"a"), consumer_key("adtrack", b""));
    }
}
