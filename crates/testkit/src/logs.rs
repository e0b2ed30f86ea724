//! Captures what the hub logs in this test process, so tests can assert that no PHI is in it.

use std::io::Write;
use std::sync::{Mutex, Once};
use tracing_subscriber::fmt::MakeWriter;

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

#[derive(Debug, Clone, Copy)]
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        Capture
    }
}

/// The same subscriber the binary installs (JSON, info), writing into memory.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        let config = meditrack::Config::default();
        meditrack::logging::init(&config, Capture);
    });
}

/// Everything logged so far by every hub in this process.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}
