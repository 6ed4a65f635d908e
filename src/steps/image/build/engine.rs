//! What the build asks of the engine: the builder it has, the build's options, and, for the
//! classic builder, the cache sources pulled first.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use futures_util::StreamExt;

use super::output::human_bytes;
use super::{BuildError, BuildRequest, CacheSources, Credentials, Pulled};
use crate::report::Reporter;
use crate::settings::Builder;

/// The classic builder's cache sources: each image pulled, or left out with a warning (a build
/// without its cache is slower, not wrong). Returns the images the engine now has.
pub(super) async fn pull_sources(
    docker: &Docker,
    cache: &CacheSources,
    credentials: &Credentials,
    reporter: &dyn Reporter,
) -> (CacheSources, Pulled) {
    let mut pulled = Pulled::default();
    let mut images = Vec::new();
    for image in &cache.images {
        let started = std::time::Instant::now();
        let host = image.split('/').next().unwrap_or_default();
        let credentials = credentials.0.get(host).cloned();
        let options = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = docker.create_image(Some(options), None, credentials);
        let mut layers: HashMap<String, u64> = HashMap::new();
        let mut failure = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let (Some(id), Some(total)) = (
                        info.id,
                        info.progress_detail.and_then(|detail| detail.total),
                    ) && info.status.as_deref() == Some("Downloading")
                    {
                        layers.insert(id, u64::try_from(total).unwrap_or_default());
                    }
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let bytes: u64 = layers.values().sum();
        let seconds = started.elapsed().as_secs();
        match failure {
            None => {
                reporter.info(&format!(
                    "cache from `{image}`: pulled {} in {seconds} s",
                    human_bytes(bytes)
                ));
                pulled.bytes += bytes;
                pulled.seconds += seconds;
                images.push(image.clone());
            }
            Some(error) => reporter.info(&format!(
                "warning: cache source `{image}` left out, its pull failed: {error}"
            )),
        }
    }
    (
        CacheSources {
            images,
            ..cache.clone()
        },
        pulled,
    )
}

/// `Auto` becomes what the engine can do.
pub async fn resolve_builder(docker: &Docker, builder: Builder) -> Result<Builder, BuildError> {
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
pub(super) fn buildkit_available(os: &str, engine_version: &str) -> bool {
    let mut numbers = engine_version
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    os.eq_ignore_ascii_case("linux") && (major, minor) >= (18, 9)
}

/// Build arg that makes BuildKit write its cache metadata into the image (inline cache), so the
/// next build can use the pushed image as a cache source.
pub(super) const INLINE_CACHE_ARG: &str = "BUILDKIT_INLINE_CACHE";

pub(super) fn build_options(
    request: &BuildRequest,
    builder: Builder,
    cache: Option<&CacheSources>,
) -> bollard::query_parameters::BuildImageOptions {
    let inline = String::from("1");
    let inline_arg = INLINE_CACHE_ARG.to_owned();
    let mut args: HashMap<&String, &String> =
        request.args.iter().chain(&request.secret_args).collect();
    if builder == Builder::BuildKit && request.cache.is_some() {
        args.insert(&inline_arg, &inline);
    }
    let cache_from: Vec<String> = cache.map(|cache| cache.images.clone()).unwrap_or_default();
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
    if !cache_from.is_empty() {
        options = options.cachefrom(&cache_from);
    }
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
pub(super) fn session_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("berth-{}-{nanos}", std::process::id())
}
