//! Reading a JavaScript `ReadableStream` (a request body, a socket) chunk by chunk through one
//! reader taken once and never released: in workerd `releaseLock()` costs more CPU than the
//! read it follows (seen with `scripts/profile`), and a stream read to its end needs no
//! release.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

pub fn js_error(value: JsValue) -> io::Error {
    let text = value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "the stream failed".into());
    io::Error::other(Failure(text))
}

/// What the runtime said went wrong. Its own type rather than a `String` in the `io::Error`:
/// std's string error brings `str`'s escaping `Debug` along (about 1 KB gzip) for a message
/// only ever shown through `Display`.
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

pub struct ChunkReader {
    reader: web_sys::ReadableStreamDefaultReader,
    /// The read under way; `true` when it was started together with a write ([`Self::start_after`]).
    reading: Option<(JsFuture, bool)>,
}

impl ChunkReader {
    pub fn new(stream: &web_sys::ReadableStream) -> ChunkReader {
        ChunkReader { reader: stream.get_reader().unchecked_into(), reading: None }
    }

    /// Whether a read is under way.
    pub fn is_reading(&self) -> bool {
        self.reading.is_some()
    }

    /// Starts the next read together with `write`, a write not waited for yet: one promise
    /// (`Promise.all`) for both instead of one each, and it fails with the write's error if
    /// the write fails. Every promise waited for from wasm costs two closures, their
    /// finalizer registrations and a microtask: most of the JavaScript glue's share of a send
    /// (`scripts/profile`).
    pub fn start_after(&mut self, write: &js_sys::Promise) {
        let both = js_sys::Promise::all(&js_sys::Array::of2(write, &self.reader.read()));
        self.reading = Some((JsFuture::from(both), true));
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<js_sys::Uint8Array>>> {
        let reader = &self.reader;
        let (reading, after_write) = self.reading.get_or_insert_with(|| (JsFuture::from(reader.read()), false));
        let result = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result,
        };
        let after_write = *after_write;
        self.reading = None;
        let mut chunk = result.map_err(js_error)?;
        if after_write {
            // `[write's result, read's result]`
            chunk = chunk.unchecked_into::<js_sys::Array>().get(1);
        }
        let value = js_sys::Reflect::get(&chunk, &JsValue::from_str("value")).map_err(js_error)?;
        // `{done: true}` carries no value.
        Poll::Ready(Ok(value.dyn_into::<js_sys::Uint8Array>().ok()))
    }

    /// Gives the stream back (before `startTls()` takes the socket over).
    pub fn release(self) {
        self.reader.release_lock();
    }
}
