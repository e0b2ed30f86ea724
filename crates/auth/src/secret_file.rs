//! Files that hold secrets: readable by their owner only, and never seen half-written.

use std::io::Write;
use std::path::Path;

fn options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Writes `make()` to `path` (mode 0600) unless the file exists. Of two processes starting
/// at once, only the first creation wins; the other reads what it wrote.
pub(crate) fn create_once(path: &Path, make: impl FnOnce() -> Vec<u8>) -> std::io::Result<bool> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        return Ok(false);
    }
    // Written aside and linked into place, so a reader never sees a partial file.
    let aside = path.with_extension(format!("new-{}", uuid::Uuid::now_v7()));
    let mut file = options().open(&aside)?;
    file.write_all(&make())?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&aside, path);
    std::fs::remove_file(&aside)?;
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "secret file created");
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `contents` in one rename (mode 0600).
pub(crate) fn replace(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let aside = path.with_extension(format!("new-{}", uuid::Uuid::now_v7()));
    let mut file = options().open(&aside)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&aside, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable only once the directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
