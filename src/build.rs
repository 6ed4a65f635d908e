//! The build step's Docker part: send the context, run the build, stream its output.
//!
//! # BuildKit or the classic builder
//!
//! [`Builder::Auto`] uses BuildKit when the engine has it (Linux engines from 18.09 on) and the
//! classic builder otherwise. BuildKit goes through bollard's `buildkit_providerless` feature,
//! which runs the gRPC session the engine asks for. Measured on the 2-core dev machine, a cold
//! debug build of bollard with that feature (plus the `time` feature it requires) took 68 s
//! against 39 s without it, so about 30 s extra, and it works against the local engine 20.10
//! (API 1.41): vertices, logs and failing steps come back as decoded `StatusResponse`s.
//!
//! Either way the context is sent as a tar stream from [`crate::context`], so `.dockerignore`
//! works the same with both builders.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use futures_util::StreamExt;

use crate::context::{BuildContext, ContextError, ContextStats};
use crate::error::Error;
use crate::report::Reporter;
use crate::settings::Builder;
use crate::text::code_list;

/// Everything the build needs; paths and values as validated by [`crate::settings`].
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Absolute path of the context folder.
    pub context: PathBuf,
    /// Relative to `context`.
    pub dockerfile: PathBuf,
    /// Multi-stage target, if any.
    pub target: Option<String>,
    /// For example `linux/amd64`.
    pub platform: String,
    /// Build args that may be shown.
    pub args: BTreeMap<String, String>,
    /// Build args whose values are never shown: any occurrence in the output becomes `***`.
    pub secret_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Full local reference, for example `127.0.0.1:5055/berth-example:abc123`.
    pub tag: String,
    pub builder: Builder,
}

/// The image a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// `sha256:…`
    pub id: String,
    /// What was sent as the build context.
    pub context: ContextStats,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Context(#[from] ContextError),

    /// A Dockerfile instruction failed; `step` is as the builder names it (`Step 3/7 : RUN …`
    /// or `[3/7] RUN …`).
    #[error("`{step}` failed: {message}")]
    Instruction { step: String, message: String },

    /// The engine refused the build before any instruction ran (bad Dockerfile, unknown target,
    /// bad platform).
    #[error("the build failed: {message}")]
    Failed { message: String },

    #[error("the Docker build request failed")]
    Docker(#[source] bollard::errors::Error),

    #[error("the build of `{tag}` finished without an image id")]
    NoImage { tag: String },
}

/// Checks, before any AWS or Docker call, that the Dockerfile is there and has the `target`
/// stage: a typo in berth.toml is a settings error, found with nothing changed.
pub fn check_dockerfile(dockerfile: &Path, target: Option<&str>) -> Result<(), Error> {
    let text = fs_err::read_to_string(dockerfile).map_err(|error| Error::Mismatch {
        problem: match error.kind() {
            std::io::ErrorKind::NotFound => {
                format!("Dockerfile `{}` not found", dockerfile.display())
            }
            _ => error.to_string(),
        },
        hint: "set `build.dockerfile` (relative to `build.context`) in berth.toml".to_owned(),
    })?;
    let Some(target) = target else {
        return Ok(());
    };
    let stages = stages(&text);
    if stages
        .iter()
        .any(|stage| stage.eq_ignore_ascii_case(target))
    {
        return Ok(());
    }
    Err(Error::Mismatch {
        problem: format!(
            "`build.target` `{target}` is not a stage of `{}`; its stages: {}",
            dockerfile.display(),
            if stages.is_empty() {
                "none named".to_owned()
            } else {
                code_list(&stages)
            }
        ),
        hint: format!(
            "fix `build.target` in berth.toml, or name the stage in the Dockerfile (`FROM … AS {target}`)"
        ),
    })
}

/// The named stages of a Dockerfile, in order: `FROM [--platform=…] image AS name`.
fn stages(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [from, .., as_, name]
                    if from.eq_ignore_ascii_case("FROM") && as_.eq_ignore_ascii_case("AS") =>
                {
                    Some((*name).to_owned())
                }
                _ => None,
            }
        })
        .collect()
}

/// Builds `request.tag` from `request.context`, reporting every output line.
pub async fn build_image(
    docker: &Docker,
    request: &BuildRequest,
    reporter: &dyn Reporter,
) -> Result<BuiltImage, BuildError> {
    let builder = resolve_builder(docker, request.builder).await?;
    let context = BuildContext::new(
        &request.context,
        &request.dockerfile,
        builder == Builder::BuildKit,
    )?;
    let masker = Masker::new(request.secret_args.values());

    let ignore = context.ignore_file().map_or_else(
        || "no ignore file".to_owned(),
        |path| format!("ignore rules from `{}`", path.display()),
    );
    reporter.info(&format!(
        "building `{}` with the {} builder from `{}` ({ignore})",
        request.tag,
        match builder {
            Builder::BuildKit => "BuildKit",
            _ => "classic",
        },
        request.context.display(),
    ));

    let (body, context_task) = context.stream();
    let options = build_options(request, builder);
    let stream = docker.build_image(options, None, Some(bollard::body_try_stream(body)));
    let outcome = follow(stream, builder, &masker, reporter).await;
    // The request is over, so nothing reads the context any more: the writer ends.
    let context = context_task.finish().await;

    // A broken context explains a failed build better than the engine's complaint about it.
    let (stats, id) = match (context, outcome) {
        (Err(ContextError::Closed), Err(error)) | (Ok(_), Err(error)) => return Err(error),
        (Err(error), _) => return Err(error.into()),
        (Ok(stats), Ok(id)) => (stats, id),
    };
    let id = match id {
        Some(id) => id,
        // Older engines only say `Successfully built`; the tag tells.
        None => docker
            .inspect_image(&request.tag)
            .await
            .map_err(BuildError::Docker)?
            .id
            .ok_or_else(|| BuildError::NoImage {
                tag: request.tag.clone(),
            })?,
    };
    reporter.info(&format!(
        "built `{}` ({id}) from {} files, {} of context",
        request.tag,
        stats.files,
        human_bytes(stats.bytes)
    ));
    Ok(BuiltImage { id, context: stats })
}

/// `Auto` becomes what the engine can do.
async fn resolve_builder(docker: &Docker, builder: Builder) -> Result<Builder, BuildError> {
    if builder != Builder::Auto {
        return Ok(builder);
    }
    let version = docker.version().await.map_err(BuildError::Docker)?;
    let buildkit = buildkit_available(
        version.os.as_deref().unwrap_or_default(),
        version.version.as_deref().unwrap_or_default(),
    );
    Ok(if buildkit {
        Builder::BuildKit
    } else {
        Builder::Classic
    })
}

/// BuildKit ships in Linux engines from 18.09 on.
fn buildkit_available(os: &str, engine_version: &str) -> bool {
    let mut numbers = engine_version
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    os.eq_ignore_ascii_case("linux") && (major, minor) >= (18, 9)
}

fn build_options(
    request: &BuildRequest,
    builder: Builder,
) -> bollard::query_parameters::BuildImageOptions {
    let args: HashMap<&String, &String> = request.args.iter().chain(&request.secret_args).collect();
    let labels: HashMap<&String, &String> = request.labels.iter().collect();
    let dockerfile = request
        .dockerfile
        .components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let mut options = BuildImageOptionsBuilder::default()
        .dockerfile(&dockerfile)
        .t(&request.tag)
        .rm(true)
        .forcerm(true)
        .platform(&request.platform)
        .target(request.target.as_deref().unwrap_or_default())
        .buildargs(&args)
        .labels(&labels);
    if builder == Builder::BuildKit {
        options = options
            .version(BuilderVersion::BuilderBuildKit)
            .session(&session_id());
    } else {
        options = options.version(BuilderVersion::BuilderV1);
    }
    options.build()
}

/// BuildKit wants a session id unique to the build.
fn session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("berth-{}-{nanos}", std::process::id())
}

/// Reads the build's output to the end: reports it line by line and returns the image id if the
/// engine sent one.
async fn follow(
    mut stream: impl futures_util::Stream<Item = Result<BuildInfo, bollard::errors::Error>> + Unpin,
    builder: Builder,
    masker: &Masker,
    reporter: &dyn Reporter,
) -> Result<Option<String>, BuildError> {
    let mut output = Output::new(builder == Builder::BuildKit);
    let mut emit = |line: &str| reporter.output("build", &masker.mask(line));
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => output.take(info, &mut emit),
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                output.flush(&mut emit);
                let message = masker.mask(error.trim());
                return Err(match output.failed_step() {
                    Some(step) => BuildError::Instruction {
                        step: masker.mask(&step),
                        message,
                    },
                    None => BuildError::Failed { message },
                });
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                output.flush(&mut emit);
                return Err(BuildError::Failed {
                    message: masker.mask(message.trim()),
                });
            }
            Err(error) => {
                output.flush(&mut emit);
                return Err(BuildError::Docker(error));
            }
        }
    }
    output.flush(&mut emit);
    Ok(output.image_id)
}

/// Turns the engine's build messages into lines, and remembers the step that is running.
#[derive(Debug, Default)]
struct Output {
    buildkit: bool,
    /// Text after the last newline of the classic builder's `stream`.
    partial: String,
    /// The last `Step n/m : …` of the classic builder.
    step: Option<String>,
    /// BuildKit vertices already reported, by digest.
    started: HashSet<String>,
    /// BuildKit vertex names by digest, for naming a failure.
    names: HashMap<String, String>,
    /// BuildKit: the first vertex that reported an error.
    failed: Option<String>,
    /// BuildKit statuses already reported, by id.
    statuses: HashSet<String>,
    /// BuildKit log text after the last newline, by vertex.
    log_partial: BTreeMap<String, String>,
    image_id: Option<String>,
}

impl Output {
    fn new(buildkit: bool) -> Self {
        Self {
            buildkit,
            ..Self::default()
        }
    }

    fn take(&mut self, info: BuildInfo, emit: &mut impl FnMut(&str)) {
        if let Some(text) = info.stream {
            self.partial.push_str(&text);
            while let Some(end) = self.partial.find('\n') {
                let line: String = self.partial.drain(..=end).collect();
                self.line(line.trim_end(), emit);
            }
        }
        if let Some(status) = info.status {
            let status = status.trim_end();
            // Pull progress comes as a stream of numbers; only the named states are worth a line.
            if info
                .progress_detail
                .is_none_or(|detail| detail.total.is_none())
            {
                match info.id {
                    Some(id) if !status.is_empty() => emit(&format!("{id}: {status}")),
                    _ => self.line(status, emit),
                }
            }
        }
        match info.aux {
            Some(BuildInfoAux::Default(image)) => {
                if let Some(id) = image.id {
                    self.image_id = Some(id);
                }
            }
            Some(BuildInfoAux::BuildKit(status)) => self.buildkit_status(status, emit),
            None => {}
        }
    }

    fn line(&mut self, line: &str, emit: &mut impl FnMut(&str)) {
        if line.trim().is_empty() {
            return;
        }
        if !self.buildkit && line.starts_with("Step ") {
            self.step = Some(line.to_owned());
        }
        emit(line);
    }

    fn buildkit_status(
        &mut self,
        status: bollard::moby::buildkit::v1::StatusResponse,
        emit: &mut impl FnMut(&str),
    ) {
        for vertex in status.vertexes {
            self.names
                .entry(vertex.digest.clone())
                .or_insert_with(|| vertex.name.clone());
            let begun = vertex.started.is_some() || vertex.cached || vertex.completed.is_some();
            if begun && self.started.insert(vertex.digest.clone()) {
                if vertex.cached {
                    emit(&format!("{} (cached)", vertex.name));
                } else {
                    emit(&vertex.name);
                }
            }
            if !vertex.error.is_empty() && self.failed.is_none() {
                self.failed = Some(vertex.name);
            }
        }
        for log in status.logs {
            let partial = self.log_partial.entry(log.vertex).or_default();
            partial.push_str(&String::from_utf8_lossy(&log.msg));
            while let Some(end) = partial.find('\n') {
                let line: String = partial.drain(..=end).collect();
                let line = line.trim_end();
                if !line.is_empty() {
                    emit(line);
                }
            }
        }
        for warning in status.warnings {
            emit(&format!(
                "warning: {}",
                String::from_utf8_lossy(&warning.short)
            ));
        }
        for vertex_status in status.statuses {
            // Layer export and naming are worth one line each once done; byte counts are not.
            if vertex_status.completed.is_some()
                && vertex_status.total == 0
                && self.statuses.insert(vertex_status.id.clone())
            {
                emit(&vertex_status.id);
            }
        }
    }

    /// Reports text still waiting for its newline.
    fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        let partial = std::mem::take(&mut self.partial);
        self.line(partial.trim_end(), emit);
        for (_, partial) in std::mem::take(&mut self.log_partial) {
            let line = partial.trim_end();
            if !line.is_empty() {
                emit(line);
            }
        }
    }

    /// The step the build failed at, as the builder names it.
    fn failed_step(&self) -> Option<String> {
        if self.buildkit {
            self.failed.clone()
        } else {
            self.step.clone()
        }
    }
}

/// Replaces secret build arg values with `***`.
#[derive(Debug)]
struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    secrets: Vec<String>,
}

impl Masker {
    fn new<'a>(values: impl IntoIterator<Item = &'a String>) -> Self {
        let mut secrets: Vec<String> = values
            .into_iter()
            .filter(|value| !value.is_empty())
            .cloned()
            .collect();
        secrets.sort_by_key(|value| std::cmp::Reverse(value.len()));
        Self { secrets }
    }

    fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_the_named_from_lines() {
        let rows = [
            ("one unnamed stage", "FROM base\nRUN true\n", vec![]),
            (
                "named stages, any case, with a platform",
                "FROM --platform=$BUILDPLATFORM base AS deps\nfrom deps as Assets\nFROM base\n",
                vec!["deps", "Assets"],
            ),
            (
                "a comment is not a stage",
                "# FROM x AS y\nFROM base\n",
                vec![],
            ),
        ];
        for (case, text, want) in rows {
            assert_eq!(stages(text), want, "{case}");
        }
    }

    #[test]
    fn buildkit_is_available_on_linux_engines_from_18_09() {
        assert!(buildkit_available("linux", "20.10.24+dfsg1"));
        assert!(buildkit_available("linux", "18.09.0"));
        assert!(!buildkit_available("linux", "18.06.3-ce"));
        assert!(!buildkit_available("windows", "20.10.24"));
        assert!(!buildkit_available("", ""));
    }

    #[test]
    fn secret_values_are_masked_longest_first() {
        let secrets = ["abc".to_owned(), "abcdef".to_owned(), String::new()];
        let masker = Masker::new(&secrets);
        assert_eq!(masker.mask("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(masker.mask("nothing"), "nothing");
    }

    fn stream(text: &str) -> BuildInfo {
        BuildInfo {
            stream: Some(text.to_owned()),
            ..BuildInfo::default()
        }
    }

    #[test]
    fn classic_output_is_split_into_lines_and_remembers_the_step() {
        let mut output = Output::new(false);
        let mut lines = Vec::new();
        let mut emit = |line: &str| lines.push(line.to_owned());
        output.take(stream("Step 1/2 : FROM base\n ---> 1fb4"), &mut emit);
        output.take(stream("5e0d\n\nStep 2/2 : RUN exit 3\n"), &mut emit);
        output.take(stream(" ---> Running in 0123"), &mut emit);
        output.flush(&mut emit);
        assert_eq!(
            lines,
            [
                "Step 1/2 : FROM base",
                " ---> 1fb45e0d",
                "Step 2/2 : RUN exit 3",
                " ---> Running in 0123"
            ]
        );
        assert_eq!(
            output.failed_step().as_deref(),
            Some("Step 2/2 : RUN exit 3")
        );
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
