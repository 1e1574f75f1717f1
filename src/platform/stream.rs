//! Reading a JavaScript `ReadableStream` (a request body, a socket) chunk by chunk through one
//! reader taken once and never released: in workerd `releaseLock()` costs more CPU than the
//! read it follows (seen with `scripts/profile`), and a stream read to its end needs no
//! release.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{js_sys, web_sys};

pub fn js_error(value: JsValue) -> io::Error {
    let text = value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "the stream failed".into());
    io::Error::other(text)
}

pub struct ChunkReader {
    reader: web_sys::ReadableStreamDefaultReader,
    reading: Option<JsFuture>,
}

impl ChunkReader {
    pub fn new(stream: &web_sys::ReadableStream) -> ChunkReader {
        ChunkReader { reader: stream.get_reader().unchecked_into(), reading: None }
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<js_sys::Uint8Array>>> {
        let reader = &self.reader;
        let reading = self.reading.get_or_insert_with(|| JsFuture::from(reader.read()));
        let result = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result,
        };
        self.reading = None;
        let chunk = result.map_err(js_error)?;
        let value = js_sys::Reflect::get(&chunk, &JsValue::from_str("value")).map_err(js_error)?;
        // `{done: true}` carries no value.
        Poll::Ready(Ok(value.dyn_into::<js_sys::Uint8Array>().ok()))
    }

    /// Gives the stream back (before `startTls()` takes the socket over).
    pub fn release(self) {
        self.reader.release_lock();
    }
}
