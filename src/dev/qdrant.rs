//! Which Qdrant `lyra dev` runs, decided before anything starts: the binary named by
//! `--qdrant-bin` / `QDRANT_BIN`, else `qdrant` on `PATH`, else the copy downloaded earlier
//! into the cache, else the pinned official release downloaded now (sha256-checked). With
//! `--standin`, the project's stand-in (a test double) instead, said out loud on every start.
//! When none can be had, one line names every way out.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::release;

/// Where the binary came from, for the start-up line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Given,
    Path,
    Cache,
    Downloaded,
    Standin,
}

impl Origin {
    fn describe(self) -> &'static str {
        match self {
            Origin::Given => "--qdrant-bin / QDRANT_BIN",
            Origin::Path => "found on PATH",
            Origin::Cache => "downloaded earlier",
            Origin::Downloaded => "just downloaded, sha256 verified",
            Origin::Standin => "--standin",
        }
    }
}

/// The Qdrant the local nodes will run.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub bin: PathBuf,
    pub origin: Origin,
    /// What the binary says of itself (`qdrant 1.18.3`).
    pub version: String,
}

impl Resolved {
    /// Whether the binary says it is Qdrant (the stand-in says `qdrant-standin ...`).
    pub fn is_qdrant(&self) -> bool {
        self.origin != Origin::Standin
            && self
                .version
                .strip_prefix("qdrant ")
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
    }

    /// The start-up line: which binary, which version, from where.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}; {})",
            self.version,
            self.bin.display(),
            self.origin.describe()
        )
    }
}

/// What the resolution may use.
#[derive(Debug, Clone)]
pub struct Options {
    pub given: Option<PathBuf>,
    pub standin: bool,
    pub cache_dir: PathBuf,
    pub release_url: String,
    /// Replaces the pinned digest, for a mirror that serves its own build.
    pub sha256: Option<String>,
    pub download_timeout: Duration,
}

/// The default cache: `$XDG_CACHE_HOME/lyra/qdrant`, else `~/.cache/lyra/qdrant`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let home = || {
        std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".cache"))
    };
    xdg.or_else(home).map(|c| c.join("lyra").join("qdrant"))
}

/// Where the pinned release lives in the cache.
pub fn cached_binary(cache_dir: &Path) -> PathBuf {
    cache_dir.join(release::VERSION).join("qdrant")
}

/// The one-line ways out, appended to every failure.
fn options_line() -> String {
    format!(
        "install Qdrant {} (https://qdrant.tech/documentation/guides/installation/) and put \
         `qdrant` on PATH, or run `QDRANT_BIN=/path/to/qdrant lyra dev`, or `lyra dev --standin` \
         for a demo on the project's stand-in (a test double, not Qdrant)",
        release::VERSION
    )
}

pub fn resolve(o: &Options) -> Result<Resolved, String> {
    if o.standin {
        let bin = standin()?;
        let version = version_of(&bin)?;
        return Ok(Resolved {
            bin,
            origin: Origin::Standin,
            version,
        });
    }
    if let Some(given) = &o.given {
        let bin = which::which(given).map_err(|_| {
            format!(
                "the Qdrant binary {} (--qdrant-bin / QDRANT_BIN) is not an executable file: {}",
                given.display(),
                options_line()
            )
        })?;
        let version = version_of(&bin)?;
        return Ok(Resolved {
            bin,
            origin: Origin::Given,
            version,
        });
    }
    if let Ok(bin) = which::which("qdrant") {
        let version = version_of(&bin)?;
        return Ok(Resolved {
            bin,
            origin: Origin::Path,
            version,
        });
    }
    let cached = cached_binary(&o.cache_dir);
    // A cached binary that does not run is replaced below, not trusted.
    if is_executable(&cached)
        && let Ok(version) = version_of(&cached)
    {
        return Ok(Resolved {
            bin: cached,
            origin: Origin::Cache,
            version,
        });
    }
    download(o, &cached)?;
    let version = version_of(&cached)?;
    Ok(Resolved {
        bin: cached,
        origin: Origin::Downloaded,
        version,
    })
}

fn download(o: &Options, dest: &Path) -> Result<(), String> {
    let asset = release::this_platform().ok_or_else(|| {
        format!(
            "no Qdrant is installed and upstream publishes no build for {}/{}: {}",
            std::env::consts::OS,
            std::env::consts::ARCH,
            options_line()
        )
    })?;
    let url = format!(
        "{}/v{}/{}",
        o.release_url.trim_end_matches('/'),
        release::VERSION,
        asset.archive
    );
    let expected = o.sha256.as_deref().unwrap_or(asset.sha256);
    eprintln!(
        "No Qdrant found: downloading Qdrant {} from {url} into {}",
        release::VERSION,
        o.cache_dir.display()
    );
    let fail = |e: release::DownloadError| {
        format!(
            "no Qdrant is installed and the download failed ({e}): {}",
            options_line()
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let archive = runtime
        .block_on(release::fetch(&url, o.download_timeout))
        .map_err(fail)?;
    release::install(&url, &archive, expected, dest).map_err(fail)
}

/// The stand-in beside this executable (a cargo build puts both in one directory), or on PATH.
fn standin() -> Result<PathBuf, String> {
    const NAME: &str = "qdrant-standin";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(NAME)))
        .filter(|p| is_executable(p));
    beside.or_else(|| which::which(NAME).ok()).ok_or_else(|| {
        format!(
            "--standin needs the stand-in binary `{NAME}` beside lyra or on PATH: build it with \
                 `cargo build --release -p bench --bin {NAME}`"
        )
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Asks the binary for its version (`qdrant --version` prints `qdrant 1.18.3`), so that a
/// wrong file is refused now rather than when the first cluster's nodes fail to start.
pub fn version_of(bin: &Path) -> Result<String, String> {
    let refused = |why: String| {
        format!(
            "{} does not run as Qdrant ({why}): {}",
            bin.display(),
            options_line()
        )
    };
    let mut child = Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| refused(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(refused("`--version` did not answer within 10 s".into()));
            }
            Err(e) => return Err(refused(e.to_string())),
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| refused(e.to_string()))?;
    let line = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned);
    match line {
        Some(l) if output.status.success() => Ok(l),
        _ => Err(refused(format!(
            "`--version` exited with {} and printed no version",
            output.status
        ))),
    }
}
