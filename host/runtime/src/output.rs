//! Guest stdout/stderr as tracing records: bytes are split into lines, each line is a
//! log record of the plugin (info for stdout, warn for stderr).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::bindings::types::LogLevel;
use crate::identity::PluginIdentity;

/// A stdout or stderr of one plugin.
pub struct GuestOutput {
    identity: Arc<PluginIdentity>,
    level: LogLevel,
    instance: u32,
}

impl GuestOutput {
    /// `stream` is `"stdout"` or `"stderr"` of the plugin's instance `instance`.
    pub fn new(identity: Arc<PluginIdentity>, stream: &str, instance: u32) -> Self {
        let level = if stream == "stderr" {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        Self {
            identity,
            level,
            instance,
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            identity: self.identity.clone(),
            level: self.level,
            instance: self.instance,
            buf: Vec::new(),
        })
    }
}

/// Longest partial line held before it is emitted anyway.
const MAX_PENDING: usize = 8 * 1024;

struct LineWriter {
    identity: Arc<PluginIdentity>,
    level: LogLevel,
    instance: u32,
    buf: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if !text.is_empty() {
            self.identity.log_from(self.instance, self.level, text);
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.buf.extend_from_slice(data);
        while let Some(pos) = this.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = this.buf.drain(..=pos).collect();
            this.emit(&line);
        }
        if this.buf.len() > MAX_PENDING {
            let line = std::mem::take(&mut this.buf);
            this.emit(&line);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let rest = std::mem::take(&mut self.buf);
        self.emit(&rest);
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut self.buf);
        self.emit(&rest);
    }
}
