//! The engine's build messages, read: lines for people (secrets masked), the step that runs,
//! which steps came from the cache, what was pulled, and what the engine tagged. Both builders:
//! the classic builder's `stream` text and BuildKit's status messages.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bollard::models::{BuildInfo, BuildInfoAux};

use super::{Pulled, StepCounts};

/// Turns the engine's build messages into lines, and remembers the step that is running.
#[derive(Debug, Default)]
pub(super) struct Output {
    pub(super) buildkit: bool,
    /// Text after the last newline of the classic builder's `stream`.
    pub(super) partial: String,
    /// The last `Step n/m : …` of the classic builder.
    pub(super) step: Option<String>,
    /// BuildKit vertices already reported as running, by digest.
    pub(super) started: HashSet<String>,
    /// BuildKit vertices already reported as cached, by digest.
    pub(super) cached_shown: HashSet<String>,
    /// Names of the BuildKit steps that ran.
    pub(super) ran: BTreeSet<String>,
    /// BuildKit vertex names by digest, for naming a failure.
    pub(super) names: HashMap<String, String>,
    /// BuildKit: the first vertex that reported an error.
    pub(super) failed: Option<String>,
    /// BuildKit statuses already reported, by id.
    pub(super) statuses: HashSet<String>,
    /// BuildKit log text after the last newline, by vertex.
    pub(super) log_partial: BTreeMap<String, String>,
    pub(super) image_id: Option<String>,
    /// Images the engine said it tagged (`Successfully tagged …`, BuildKit's `naming to …`).
    pub(super) tagged: BTreeSet<String>,
    /// The output ended with an error of the connection rather than of the build.
    pub(super) cut_short: Option<bollard::errors::Error>,
    /// Each Dockerfile step the builder named, and whether it came from the cache: the classic
    /// builder's in order, BuildKit's by vertex digest.
    pub(super) steps: BTreeMap<String, Done>,
    /// BuildKit: layers read from a registry, by digest: when the read began and ended.
    pub(super) layers: HashMap<String, Layer>,
}

/// How one Dockerfile step was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    Cached,
    Run,
    /// `FROM`, or the builder's own work: neither cached nor run.
    NotAStep,
}

/// A layer BuildKit read from a registry.
#[derive(Debug, Default)]
pub(super) struct Layer {
    /// Seconds since the Unix epoch, as BuildKit stamps them.
    pub(super) started: Option<f64>,
    pub(super) completed: Option<f64>,
}

impl Output {
    pub(super) fn new(buildkit: bool) -> Self {
        Self {
            buildkit,
            ..Self::default()
        }
    }

    pub(super) fn take(&mut self, info: BuildInfo, emit: &mut impl FnMut(&str)) {
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

    pub(super) fn line(&mut self, line: &str, emit: &mut impl FnMut(&str)) {
        if line.trim().is_empty() {
            return;
        }
        if let Some(name) = line.trim().strip_prefix("Successfully tagged ") {
            self.tagged.insert(name.trim().to_owned());
        }
        if !self.buildkit {
            if is_classic_step(line) {
                self.step = Some(line.to_owned());
                // Classic steps are keyed by their order; the engine numbers them.
                let key = format!("{:06}", self.steps.len());
                self.steps.insert(key, Done::of_classic(line));
            } else if line.trim_start().starts_with("---> Using cache")
                && let Some(done) = self.steps.values_mut().next_back()
                && *done == Done::Run
            {
                *done = Done::Cached;
            }
        }
        emit(line);
    }

    pub(super) fn buildkit_status(
        &mut self,
        status: bollard::moby::buildkit::v1::StatusResponse,
        emit: &mut impl FnMut(&str),
    ) {
        self.vertices(status.vertexes, emit);
        self.logs(status.logs, emit);
        for warning in status.warnings {
            emit(&format!(
                "warning: {}",
                String::from_utf8_lossy(&warning.short)
            ));
        }
        self.statuses(status.statuses, emit);
    }

    /// Each step as it starts, or once it completed from the cache; which ran, and which failed.
    fn vertices(
        &mut self,
        vertexes: Vec<bollard::moby::buildkit::v1::Vertex>,
        emit: &mut impl FnMut(&str),
    ) {
        for vertex in vertexes {
            self.names
                .entry(vertex.digest.clone())
                .or_insert_with(|| vertex.name.clone());
            // A vertex may first look cached and then run after all (its result was not in the
            // cache): a line says `(cached)` only once it completed so.
            let finished = vertex.completed.is_some();
            if vertex.cached && finished {
                if self.cached_shown.insert(vertex.digest.clone()) {
                    emit(&format!("{} (cached)", vertex.name));
                }
            } else if !vertex.cached
                && vertex.started.is_some()
                && self.started.insert(vertex.digest.clone())
            {
                emit(&vertex.name);
            }
            // A step that ended in an error (or was cancelled) neither ran to its end nor hit.
            if finished && vertex.error.is_empty() {
                let done = Done::of_buildkit(&vertex.name, vertex.cached);
                if done == Done::Run {
                    self.ran.insert(vertex.name.clone());
                }
                self.steps.insert(vertex.digest.clone(), done);
            }
            if !vertex.error.is_empty() && self.failed.is_none() {
                self.failed = Some(vertex.name);
            }
        }
    }

    /// The steps' output, line by line.
    fn logs(
        &mut self,
        logs: Vec<bollard::moby::buildkit::v1::VertexLog>,
        emit: &mut impl FnMut(&str),
    ) {
        for log in logs {
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
    }

    /// Layers pulled (when each read began and ended), images named, exports done.
    fn statuses(
        &mut self,
        statuses: Vec<bollard::moby::buildkit::v1::VertexStatus>,
        emit: &mut impl FnMut(&str),
    ) {
        for vertex_status in &statuses {
            // `pulling sha256:…`: a layer read from a registry (the engine gives no size).
            if let Some(digest) = vertex_status.id.strip_prefix("pulling ") {
                let layer = self.layers.entry(digest.to_owned()).or_default();
                let started = vertex_status
                    .started
                    .as_ref()
                    .map(|stamp| stamp.seconds as f64 + f64::from(stamp.nanos) / 1e9);
                let completed = vertex_status
                    .completed
                    .as_ref()
                    .map(|stamp| stamp.seconds as f64 + f64::from(stamp.nanos) / 1e9);
                layer.started = layer.started.or(started);
                layer.completed = completed.or(layer.completed);
            }
        }
        for vertex_status in statuses {
            if vertex_status.completed.is_some()
                && let Some(name) = vertex_status.id.strip_prefix("naming to ")
            {
                self.tagged.insert(name.trim().to_owned());
            }
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
    pub(super) fn flush(&mut self, emit: &mut impl FnMut(&str)) {
        let partial = std::mem::take(&mut self.partial);
        self.line(partial.trim_end(), emit);
        for (_, partial) in std::mem::take(&mut self.log_partial) {
            let line = partial.trim_end();
            if !line.is_empty() {
                emit(line);
            }
        }
    }

    pub(super) fn steps(&self) -> StepCounts {
        let mut counts = StepCounts::default();
        for done in self.steps.values() {
            match done {
                Done::Cached => counts.cached += 1,
                Done::Run => counts.run += 1,
                Done::NotAStep => {}
            }
        }
        counts
    }

    /// What BuildKit read from registries: the bytes (by the sizes the manifests give), and the
    /// time from the first read's start to the last one's end.
    pub(super) fn pulled(&self, sizes: &HashMap<String, u64>) -> Pulled {
        let bytes = self
            .layers
            .keys()
            .filter_map(|digest| sizes.get(digest))
            .sum();
        let first = self
            .layers
            .values()
            .filter_map(|layer| layer.started)
            .reduce(f64::min);
        let last = self
            .layers
            .values()
            .filter_map(|layer| layer.completed)
            .reduce(f64::max);
        let seconds = match (first, last) {
            (Some(first), Some(last)) if last > first => (last - first).round() as u64,
            _ => 0,
        };
        Pulled { bytes, seconds }
    }

    /// Stage labels of the steps that ran (`deps` of `[deps 2/4] RUN …`; an unlabelled
    /// single-stage step is `stage-0`).
    pub(super) fn ran_stages(&self) -> BTreeSet<String> {
        self.ran
            .iter()
            .filter_map(|name| {
                let label = name.strip_prefix('[')?.split_once(']')?.0;
                let mut words = label.split_whitespace();
                let first = words.next()?;
                Some(match words.next() {
                    Some(_) => first.to_owned(),
                    None => "stage-0".to_owned(),
                })
            })
            .collect()
    }

    /// The step the build failed at, as the builder names it.
    pub(super) fn failed_step(&self) -> Option<String> {
        if self.buildkit {
            self.failed.clone()
        } else {
            self.step.clone()
        }
    }
}

impl Done {
    /// `Step 3/7 : RUN …`: a step unless it is a `FROM`; run until `---> Using cache` says not.
    pub(super) fn of_classic(line: &str) -> Self {
        let instruction = line.split_once(" : ").map_or("", |(_, rest)| rest);
        if starts_with_word(instruction, "FROM") {
            Self::NotAStep
        } else {
            Self::Run
        }
    }

    /// `[deps 2/4] RUN …` is a Dockerfile step; `[internal] …`, `[deps 1/4] FROM …`, exporting
    /// and cache import are the builder's own work.
    pub(super) fn of_buildkit(name: &str, cached: bool) -> Self {
        let Some((label, instruction)) = name
            .strip_prefix('[')
            .and_then(|rest| rest.split_once("] "))
        else {
            return Self::NotAStep;
        };
        // `[stage N/M]` or `[N/M]`; anything else in brackets is the builder's.
        let numbered = label.split_whitespace().last().is_some_and(is_step_number);
        if !numbered || starts_with_word(instruction, "FROM") {
            Self::NotAStep
        } else if cached {
            Self::Cached
        } else {
            Self::Run
        }
    }
}

/// `Step 3/7 : RUN …`, as the classic builder starts a step (not a line a `RUN` printed that
/// happens to begin with "Step ").
pub(super) fn is_classic_step(line: &str) -> bool {
    line.strip_prefix("Step ")
        .and_then(|rest| rest.split_once(" : "))
        .is_some_and(|(numbers, _)| is_step_number(numbers))
}

/// `3/7`.
pub(super) fn is_step_number(text: &str) -> bool {
    text.split_once('/').is_some_and(|(n, m)| {
        !n.is_empty()
            && !m.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && m.bytes().all(|b| b.is_ascii_digit())
    })
}

pub(super) fn starts_with_word(text: &str, word: &str) -> bool {
    text.split_whitespace()
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(word))
}

pub(super) fn human_bytes(bytes: u64) -> String {
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
