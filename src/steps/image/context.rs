//! The build context: the files under the context folder that the engine gets as a tar stream.
//!
//! The tar is written while the folder is walked, in a blocking thread, into a small bounded
//! channel that the HTTP request body reads from. Memory stays at a few chunks whatever the size
//! of the context.
//!
//! Which files go in follows the Docker CLI:
//! - the ignore file is `.dockerignore` at the context root; BuildKit first looks for
//!   `<Dockerfile>.dockerignore` next to the Dockerfile (for example
//!   `docker/app.Dockerfile.dockerignore`), which the classic builder does not know;
//!   `.gitignore` plays no part;
//! - its rules are Docker's (see [`crate::steps::image::dockerignore`]); an excluded folder is not walked unless
//!   a `!` rule could re-include something inside it;
//! - the Dockerfile and `.dockerignore` are sent even when a rule excludes them;
//! - symlinks are sent as symlinks, never followed; sockets and devices are left out;
//! - entries are sorted by name, owned by uid/gid 0, with their real mode and mtime.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::steps::image::dockerignore::{IgnoreRules, PatternError};

/// Size of one chunk of the tar stream handed to the engine.
const CHUNK_SIZE: usize = 64 * 1024;

/// Chunks that may wait in the channel: with [`CHUNK_SIZE`], at most 512 KiB in flight.
const CHANNEL_CHUNKS: usize = 8;

/// The Docker CLI's name for the context-wide ignore file.
const DOCKERIGNORE: &str = ".dockerignore";

/// What went into the context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextStats {
    /// Regular files and symlinks (folders not counted).
    pub files: u64,
    /// Size of the tar stream, headers and padding included.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A file or folder of the context could not be read; `source` names the path too.
    #[error("cannot read `{}` for the build context", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot use ignore file `{}`", path.display())]
    IgnoreFile {
        path: PathBuf,
        #[source]
        source: PatternError,
    },

    /// The engine stopped reading the context, usually because the build failed; its own
    /// message says more.
    #[error("the Docker engine stopped reading the build context")]
    Closed,

    #[error("the thread writing the build context failed: {0}")]
    Writer(String),
}

/// A context folder, its Dockerfile and the ignore rules that apply, ready to be sent.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    /// Relative to `root`, `/`-separated.
    dockerfile: String,
    ignore_file: Option<PathBuf>,
    rules: IgnoreRules,
    /// berth's own stdout file (the orb's `record`), never sent: the dirty-tree check does not
    /// count it, so the image must not hold it either.
    own_output: Option<crate::release::OwnOutput>,
}

impl BuildContext {
    /// Reads the ignore rules for `dockerfile` (relative to `root`) and checks that the Dockerfile
    /// is there. `dockerfile_ignore`: the builder reads `<Dockerfile>.dockerignore` first, as
    /// BuildKit does and the classic builder does not.
    pub fn new(
        root: &Path,
        dockerfile: &Path,
        dockerfile_ignore: bool,
    ) -> Result<Self, ContextError> {
        let dockerfile_path = root.join(dockerfile);
        fs_err::metadata(&dockerfile_path).map_err(|source| ContextError::Read {
            path: dockerfile_path.clone(),
            source,
        })?;

        let mut specific = dockerfile_path.into_os_string();
        specific.push(DOCKERIGNORE);
        let candidates = dockerfile_ignore
            .then(|| PathBuf::from(specific))
            .into_iter()
            .chain([root.join(DOCKERIGNORE)]);
        let mut ignore_file = None;
        let mut rules = IgnoreRules::default();
        for candidate in candidates {
            match fs_err::read_to_string(&candidate) {
                Ok(text) => {
                    rules =
                        IgnoreRules::parse(&text).map_err(|source| ContextError::IgnoreFile {
                            path: candidate.clone(),
                            source,
                        })?;
                    ignore_file = Some(candidate);
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ContextError::Read {
                        path: candidate,
                        source,
                    });
                }
            }
        }

        Ok(Self {
            root: root.to_owned(),
            dockerfile: slash_path(dockerfile),
            ignore_file,
            rules,
            own_output: crate::release::OwnOutput::find(),
        })
    }

    /// The ignore file whose rules apply, if there is one.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// Writes the whole context as a tar to `out`.
    pub fn write_tar(&self, out: impl Write) -> Result<ContextStats, ContextError> {
        let mut out = CountingWriter {
            inner: out,
            bytes: 0,
        };
        let mut tar = tar::Builder::new(&mut out);
        let mut files = 0;
        self.walk(&mut tar, &self.root, Path::new(""), &mut files)?;
        tar.into_inner()
            .and_then(|out| out.flush())
            .map_err(|source| self.error_at(&self.root, source))?;
        Ok(ContextStats {
            files,
            bytes: out.bytes,
        })
    }

    /// Starts writing the tar in a blocking thread. The stream yields it in chunks as it is
    /// written; [`ContextTask::finish`] says how it went. A walk error ends the stream with an
    /// error, so the engine sees an aborted upload, never a shorter context.
    ///
    /// Must be called within a Tokio runtime.
    pub fn stream(self) -> (ContextStream, ContextTask) {
        let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
        let handle = tokio::task::spawn_blocking(move || {
            let mut writer = ChannelWriter {
                sender: sender.clone(),
                buffer: Vec::with_capacity(CHUNK_SIZE),
            };
            let result = self.write_tar(&mut writer);
            if result.is_err() {
                // Fails only if the engine already hung up, which is fine.
                let _ = sender.blocking_send(Err(io::Error::other("build context incomplete")));
            }
            result
        });
        (ContextStream { receiver }, ContextTask { handle })
    }

    fn walk<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        dir: &Path,
        prefix: &Path,
        files: &mut u64,
    ) -> Result<(), ContextError> {
        let read_error = |source| ContextError::Read {
            path: dir.to_owned(),
            source,
        };
        let mut entries = fs_err::read_dir(dir)
            .map_err(read_error)?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_error)?;
        entries.sort();

        for name in entries {
            let path = dir.join(&name);
            // The tar keeps the name's bytes; the rules match its text.
            let entry = prefix.join(&name);
            let relative = slash_path(&entry);
            let metadata =
                fs_err::symlink_metadata(&path).map_err(|source| ContextError::Read {
                    path: path.clone(),
                    source,
                })?;
            let excluded = (self.rules.is_excluded(&relative) && !self.always_sent(&relative))
                || self.own_output.is_some_and(|own| own.is_it(&metadata));
            let kind = metadata.file_type();

            if kind.is_dir() {
                if !excluded {
                    // `join("")` adds the trailing `/` that marks a folder, as Docker writes it.
                    let mut header = header_for(&metadata, tar::EntryType::Directory, 0);
                    tar.append_data(&mut header, entry.join(""), io::empty())
                        .map_err(|source| self.error_at(&path, source))?;
                }
                let may_hold_sent_files = self.rules.has_exclusions()
                    || self.dockerfile.starts_with(&format!("{relative}/"))
                    || !excluded;
                if may_hold_sent_files {
                    self.walk(tar, &path, &entry, files)?;
                }
            } else if excluded {
                continue;
            } else if kind.is_symlink() {
                let target = fs_err::read_link(&path).map_err(|source| ContextError::Read {
                    path: path.clone(),
                    source,
                })?;
                let mut header = header_for(&metadata, tar::EntryType::Symlink, 0);
                tar.append_link(&mut header, &entry, &target)
                    .map_err(|source| self.error_at(&path, source))?;
                *files += 1;
            } else if kind.is_file() {
                let file = fs_err::File::open(&path).map_err(|source| ContextError::Read {
                    path: path.clone(),
                    source,
                })?;
                let size = metadata.len();
                let mut header = header_for(&metadata, tar::EntryType::Regular, size);
                let reader = ExactReader {
                    inner: file.take(size),
                    remaining: size,
                };
                tar.append_data(&mut header, &entry, reader)
                    .map_err(|source| self.error_at(&path, source))?;
                *files += 1;
            }
        }
        Ok(())
    }

    /// The Docker CLI re-includes these whatever the rules say.
    fn always_sent(&self, relative: &str) -> bool {
        relative == self.dockerfile || relative == DOCKERIGNORE
    }

    /// An I/O error while adding `path`: the engine hanging up, or the file failing us.
    fn error_at(&self, path: &Path, source: io::Error) -> ContextError {
        if source.kind() == io::ErrorKind::BrokenPipe
            && source
                .get_ref()
                .is_some_and(|inner| inner.to_string() == ChannelWriter::CLOSED)
        {
            ContextError::Closed
        } else {
            ContextError::Read {
                path: path.to_owned(),
                source,
            }
        }
    }
}

/// The tar stream, chunk by chunk, for `bollard::body_try_stream`.
#[derive(Debug)]
pub struct ContextStream {
    receiver: mpsc::Receiver<io::Result<Bytes>>,
}

impl futures_util::Stream for ContextStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

/// The thread writing a [`ContextStream`].
#[derive(Debug)]
pub struct ContextTask {
    handle: tokio::task::JoinHandle<Result<ContextStats, ContextError>>,
}

impl ContextTask {
    /// Waits for the writer. Drop the [`ContextStream`] first (or let the request finish), or a
    /// writer waiting for room in the channel never ends.
    pub async fn finish(self) -> Result<ContextStats, ContextError> {
        self.handle
            .await
            .unwrap_or_else(|error| Err(ContextError::Writer(error.to_string())))
    }
}

/// Turns writes into chunks of about [`CHUNK_SIZE`] on the channel.
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    const CLOSED: &'static str = "build context receiver closed";

    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_SIZE));
        self.sender
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, Self::CLOSED))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK_SIZE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(data)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads exactly the size the header announced: a file that shrinks or grows while it is read
/// would otherwise corrupt the tar.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if read == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being read",
            ));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

fn header_for(metadata: &std::fs::Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(metadata.mode() & 0o7777);
    header.set_mtime(u64::try_from(metadata.mtime()).unwrap_or(0));
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn slash_path(path: &Path) -> String {
    path.components()
        .filter_map(|component| match component {
            std::path::Component::Normal(part) => Some(part.to_string_lossy()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests;
