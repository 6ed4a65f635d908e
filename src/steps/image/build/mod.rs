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
//! Either way the context is sent as a tar stream from [`crate::steps::image::context`], so `.dockerignore`
//! works the same with both builders.

mod engine;
mod output;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::BuildInfo;
use futures_util::StreamExt;
use serde::Serialize;

use crate::report::Reporter;
use crate::settings::Builder;
use crate::steps::image::context::{BuildContext, ContextError, ContextStats};
use crate::text::Masker;
use crate::text::with_causes;
pub use engine::resolve_builder;
use engine::{build_options, pull_sources};
use output::{Output, human_bytes};

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
    /// Where cached layers may come from; `None` builds with the engine's local cache alone.
    pub cache: Option<CacheSources>,
    /// For the images the build reads: base images and cache sources in those registries.
    pub credentials: Credentials,
}

/// Images whose layers a build may reuse.
#[derive(Debug, Clone, Default)]
pub struct CacheSources {
    /// Image references (`repo@sha256:…` or `repo:tag`), in the order they are tried.
    pub images: Vec<String>,
    /// Compressed size of each layer of `images`, by digest, as their manifests give it: what a
    /// build that reads the layer pulls.
    pub layer_sizes: HashMap<String, u64>,
}

/// Registry host → credentials. Never printed: `Debug` shows the hosts only.
#[derive(Clone, Default)]
pub struct Credentials(pub HashMap<String, DockerCredentials>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Credentials")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The image a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// `sha256:…`
    pub id: String,
    /// What was sent as the build context.
    pub context: ContextStats,
    /// Which Dockerfile steps came from the cache and which ran.
    pub steps: StepCounts,
    /// Cached layers read from the cache sources.
    pub pulled: Pulled,
    /// Stages (as BuildKit labels them) with a step that ran: their cache is new.
    pub ran_stages: BTreeSet<String>,
}

/// Dockerfile steps (not `FROM`, not the builder's own work) by how they were done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StepCounts {
    pub cached: u32,
    pub run: u32,
}

/// Bytes read from a registry for the build's cache, and for how long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pulled {
    pub bytes: u64,
    pub seconds: u64,
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
    #[error("the engine refused it: {message}")]
    Failed { message: String },

    #[error("the Docker build request failed")]
    Docker(#[source] bollard::errors::Error),

    #[error("the build of `{tag}` finished without an image id")]
    NoImage { tag: String },
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

    reporter.info(&building(request, builder, &context));

    let (sources, pulled_first) = match (&request.cache, builder) {
        (None, _) => (None, Pulled::default()),
        // BuildKit reads each source's cache metadata first, and layers only as it needs them.
        (Some(cache), Builder::BuildKit) => (Some(cache.clone()), Pulled::default()),
        // The classic builder reuses only images the engine has: pull them first.
        (Some(cache), _) => {
            let (sources, pulled) =
                pull_sources(docker, cache, &request.credentials, reporter).await;
            (Some(sources), pulled)
        }
    };
    let (body, context_task) = context.stream();
    let options = build_options(request, builder, sources.as_ref());
    let credentials = Some(request.credentials.0.clone()).filter(|map| !map.is_empty());
    let stream = docker.build_image(options, credentials, Some(bollard::body_try_stream(body)));
    let outcome = follow(stream, builder, &masker, reporter).await;
    // The request is over, so nothing reads the context any more: the writer ends.
    let context = context_task.finish().await;

    // A broken context explains a failed build better than the engine's complaint about it.
    let (stats, mut output) = match (context, outcome) {
        (Err(ContextError::Closed), Err(error)) | (Ok(_), Err(error)) => return Err(error),
        (Err(error), _) => return Err(error.into()),
        (Ok(stats), Ok(output)) => (stats, output),
    };
    accept_cut_short(&mut output, &request.tag, reporter)?;
    let steps = output.steps();
    let layer_sizes = request
        .cache
        .as_ref()
        .map(|cache| &cache.layer_sizes)
        .cloned()
        .unwrap_or_default();
    let mut pulled = output.pulled(&layer_sizes);
    pulled.bytes += pulled_first.bytes;
    pulled.seconds += pulled_first.seconds;
    let ran_stages = output.ran_stages();
    let id = match output.image_id.take() {
        Some(id) => id,
        None => image_id(docker, &request.tag).await?,
    };
    reporter.info(&format!(
        "built `{}` ({id}) from {} files, {} of context",
        request.tag,
        stats.files,
        human_bytes(stats.bytes)
    ));
    reporter.info(&steps_line(&steps, request.cache.as_ref().map(|_| &pulled)));
    Ok(BuiltImage {
        id,
        context: stats,
        steps,
        pulled,
        ran_stages,
    })
}

/// `steps: 6 cached, 3 run; 261 MiB of cached layers pulled in 1 s` (the pull with a cache).
fn steps_line(steps: &StepCounts, pulled: Option<&Pulled>) -> String {
    let pulled = pulled.map_or_else(String::new, |pulled| {
        format!(
            "; {} of cached layers pulled in {} s",
            human_bytes(pulled.bytes),
            pulled.seconds
        )
    });
    format!("steps: {} cached, {} run{pulled}", steps.cached, steps.run)
}

/// `building … with the … builder from … (ignore rules from …)`.
fn building(request: &BuildRequest, builder: Builder, context: &BuildContext) -> String {
    let ignore = context.ignore_file().map_or_else(
        || "no ignore file".to_owned(),
        |path| format!("ignore rules from `{}`", path.display()),
    );
    format!(
        "building `{}` with the {} builder from `{}` ({ignore})",
        request.tag,
        match builder {
            Builder::BuildKit => "BuildKit",
            _ => "classic",
        },
        request.context.display(),
    )
}

/// The engine's output can end mid-message (seen after BuildKit had tagged the image, as its
/// session closed). Once this build said it tagged the image, the image is there: a warning;
/// before, the build failed.
fn accept_cut_short(
    output: &mut Output,
    tag: &str,
    reporter: &dyn Reporter,
) -> Result<(), BuildError> {
    if let Some(error) = output.cut_short.take() {
        if !output.tagged.contains(tag) {
            return Err(BuildError::Docker(error));
        }
        reporter.info(&format!(
            "warning: the engine's build output ended early ({}) after it had tagged `{tag}`: going on with that image",
            with_causes(&error),
        ));
    }
    Ok(())
}

/// The image's id by its tag: older engines only say `Successfully built`.
async fn image_id(docker: &Docker, tag: &str) -> Result<String, BuildError> {
    docker
        .inspect_image(tag)
        .await
        .map_err(BuildError::Docker)?
        .id
        .ok_or_else(|| BuildError::NoImage {
            tag: tag.to_owned(),
        })
}

/// Reads the build's output to the end: reports it line by line and returns the image id if the
/// engine sent one.
async fn follow(
    mut stream: impl futures_util::Stream<Item = Result<BuildInfo, bollard::errors::Error>> + Unpin,
    builder: Builder,
    masker: &Masker,
    reporter: &dyn Reporter,
) -> Result<Output, BuildError> {
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
            // The connection, not the build: the caller decides whether the image was made.
            Err(error) => {
                output.flush(&mut emit);
                output.cut_short = Some(error);
                return Ok(output);
            }
        }
    }
    output.flush(&mut emit);
    Ok(output)
}

#[cfg(test)]
mod tests {
    use bollard::moby::buildkit::v1::{StatusResponse, Vertex, VertexStatus};

    use super::engine::buildkit_available;
    use super::*;

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

    struct Silent;

    impl Reporter for Silent {
        fn step_started(&self, _: &str) {}
        fn step_finished(&self, _: &str, _: std::time::Duration) {}
        fn step_skipped(&self, _: &str, _: &str) {}
        fn info(&self, _: &str) {}
    }

    /// Output that ends with an error of the connection is handed back with the error, and
    /// with what the engine said it tagged: the build decides by the tag.
    #[tokio::test]
    async fn output_cut_short_keeps_the_error_and_what_was_tagged() {
        let cut = || {
            Err(bollard::errors::Error::IOError {
                err: std::io::Error::other("bytes remaining on stream"),
            })
        };
        for (builder, tagged) in [
            (Builder::BuildKit, "Successfully tagged reg/app:abc\n"),
            (
                Builder::Classic,
                "Successfully built 1fb4\nSuccessfully tagged reg/app:abc\n",
            ),
        ] {
            let items = vec![Ok(stream(tagged)), cut()];
            let output = follow(
                futures_util::stream::iter(items),
                builder,
                &Masker::new(&[]),
                &Silent,
            )
            .await
            .unwrap();
            assert!(output.cut_short.is_some());
            assert!(output.tagged.contains("reg/app:abc"), "{:?}", output.tagged);
        }
        // Cut before any tag: nothing tagged, so the build fails with the error.
        let items = vec![Ok(stream("Step 1/2 : FROM base\n")), cut()];
        let output = follow(
            futures_util::stream::iter(items),
            Builder::Classic,
            &Masker::new(&[]),
            &Silent,
        )
        .await
        .unwrap();
        assert!(output.cut_short.is_some());
        assert!(output.tagged.is_empty());
        // BuildKit's `naming to` counts once it completed.
        let mut output = Output::new(true);
        let mut naming = VertexStatus {
            id: "naming to reg/app:def".to_owned(),
            ..VertexStatus::default()
        };
        output.buildkit_status(
            StatusResponse {
                statuses: vec![naming.clone()],
                ..StatusResponse::default()
            },
            &mut |_| {},
        );
        assert!(output.tagged.is_empty());
        naming.completed = Some(Default::default());
        output.buildkit_status(
            StatusResponse {
                statuses: vec![naming],
                ..StatusResponse::default()
            },
            &mut |_| {},
        );
        assert!(output.tagged.contains("reg/app:def"));
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

    fn vertex(name: &str, cached: bool, started: bool, completed: bool) -> StatusResponse {
        let mut vertex = Vertex {
            digest: format!("sha256:{name}"),
            name: name.to_owned(),
            cached,
            ..Vertex::default()
        };
        if started {
            vertex.started = Some(Default::default());
        }
        if completed {
            vertex.completed = Some(Default::default());
        }
        StatusResponse {
            vertexes: vec![vertex],
            ..StatusResponse::default()
        }
    }

    fn pulling(digest: &str, from: i64, to: i64) -> StatusResponse {
        let mut status = VertexStatus {
            id: format!("pulling {digest}"),
            ..VertexStatus::default()
        };
        status.started = Some(Default::default());
        status.completed = Some(Default::default());
        status.started.as_mut().unwrap().seconds = from;
        status.completed.as_mut().unwrap().seconds = to;
        StatusResponse {
            statuses: vec![status],
            ..StatusResponse::default()
        }
    }

    #[test]
    fn buildkit_steps_count_as_they_finished_and_pulls_by_the_manifests_sizes() {
        let mut output = Output::new(true);
        let mut lines = Vec::new();
        let mut emit = |line: &str| lines.push(line.to_owned());
        let updates = [
            vertex(
                "[internal] load build definition from Dockerfile",
                false,
                true,
                true,
            ),
            vertex("[base 1/2] FROM docker.io/library/base", false, true, true),
            // Looks cached, then runs after all: its layers were in no cache source.
            vertex("[gems 2/2] RUN bundle install", true, true, false),
            vertex("[gems 2/2] RUN bundle install", false, true, false),
            pulling("sha256:aaa", 100, 102),
            vertex("[gems 2/2] RUN bundle install", false, true, true),
            vertex("[release 1/4] COPY --from=gems /b /b", true, true, false),
            pulling("sha256:bbb", 101, 104),
            vertex("[release 1/4] COPY --from=gems /b /b", true, true, true),
            vertex("[2/3] RUN make", false, true, true),
        ];
        for update in updates {
            output.buildkit_status(update, &mut emit);
        }
        assert_eq!(
            lines,
            [
                "[internal] load build definition from Dockerfile",
                "[base 1/2] FROM docker.io/library/base",
                "[gems 2/2] RUN bundle install",
                "pulling sha256:aaa",
                "pulling sha256:bbb",
                "[release 1/4] COPY --from=gems /b /b (cached)",
                "[2/3] RUN make",
            ]
        );
        assert_eq!(output.steps(), StepCounts { cached: 1, run: 2 });
        assert_eq!(
            output.ran_stages(),
            BTreeSet::from(["gems".to_owned(), "stage-0".to_owned()])
        );
        let sizes = HashMap::from([
            ("sha256:aaa".to_owned(), 1000),
            ("sha256:bbb".to_owned(), 24),
            ("sha256:unread".to_owned(), 5),
        ]);
        assert_eq!(
            output.pulled(&sizes),
            Pulled {
                bytes: 1024,
                seconds: 4
            }
        );
    }

    #[test]
    fn classic_steps_are_cached_when_the_engine_says_using_cache() {
        let mut output = Output::new(false);
        let mut emit = |_: &str| {};
        output.take(
            stream(
                "Step 1/4 : FROM base\n ---> 1fb4\nStep 2/4 : WORKDIR /app\n ---> Using cache\n",
            ),
            &mut emit,
        );
        output.take(
            stream("Step 3/4 : COPY . .\n ---> 5e0d\nStep 4/4 : RUN make\n ---> Running in 0123\n"),
            &mut emit,
        );
        assert_eq!(output.steps(), StepCounts { cached: 1, run: 2 });
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }

    /// An engine that refuses a build is said once ("the build failed"), and the hint does not
    /// claim that nothing was written: the deploy's record says the build failed.
    #[test]
    fn a_refused_build_is_told_once_and_its_record_named() {
        let error = crate::error::Error::Image {
            step: "build",
            source: Box::new(BuildError::Failed {
                message: "failed to reach build target `nope`".into(),
            }),
        };
        let rendered = crate::error::render(&error);
        assert_eq!(rendered.matches("build failed").count(), 1, "{rendered}");
        assert!(
            rendered.contains("caused by: the engine refused it: failed to reach build target"),
            "{rendered}"
        );
        assert!(
            rendered.contains("no service changed (the deploy's record in S3 says it failed)"),
            "{rendered}"
        );
    }
}
