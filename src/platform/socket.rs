//! The SMTP client's connection in workerd: a `connect()` socket read and written through one
//! reader and one writer, taken when the socket opens and held for its life.
//!
//! `worker::Socket` takes the stream's lock before every read and write and releases it after;
//! in workerd `releaseLock()` was the costliest call of a send (about a tenth of a cold send's
//! CPU in `scripts/profile`), and every read also went through an extra copy. Here a read
//! copies the bytes straight from the JavaScript array into the reader's buffer.
//!
//! A write is handed to the socket and not waited for on its own: the read of the relay's
//! answer that follows waits for both (one promise instead of two, see
//! [`ChunkReader::start_after`]), and a write's failure fails that read with the same error
//! in the same phase. A flush (after a message, where a failed write means the relay cannot
//! have it) and the next write (backpressure: at most one write in flight) wait for it alone.
//!
//! Loss and duplicates: a command's failed write now fails the read of its answer, in the same
//! phase, before any message went out (nothing changes for either). The message's last write
//! is waited for at the flush, and a failed flush counts as the message not sent (retryable),
//! as a failed write always did: reporting it as possibly delivered would never retry it
//! (`tests/smtp_session.rs`: `a_failed_flush_after_the_message_is_retryable_not_delivery_unknown`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use super::stream::{js_error, ChunkReader};

/// One socket, with its reader and writer; the `Option`s hold the JavaScript call under way.
pub struct Conn {
    socket: worker_sys::Socket,
    reader: ChunkReader,
    writer: web_sys::WritableStreamDefaultWriter,
    /// The last write, handed to the socket and not waited for yet.
    unsettled: Unsettled,
    /// A wait for the last write alone (a flush, or a write behind it).
    settling: Option<JsFuture>,
    closing: Option<JsFuture>,
    /// Bytes of the last chunk read that did not fit the caller's buffer.
    rest: Vec<u8>,
}

/// A write not waited for. If the connection is dropped before anything waits for it, its
/// failure is caught here rather than reported by workerd as an unhandled rejection.
#[derive(Default)]
struct Unsettled(Option<js_sys::Promise>);

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(write) = self.0.take() {
            thread_local! {
                static IGNORE: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
            }
            IGNORE.with(|ignore| drop(write.catch(ignore)));
        }
    }
}

impl Conn {
    /// Opens a socket: `secure_transport` is workerd's `"on"`, `"off"` or `"starttls"`.
    pub fn connect(host: &str, port: u16, secure_transport: &str) -> io::Result<Conn> {
        let address = js_sys::Object::new();
        let set = |object: &js_sys::Object, key: &str, value: JsValue| {
            js_sys::Reflect::set(object, &JsValue::from_str(key), &value).map(drop).map_err(js_error)
        };
        set(&address, "hostname", JsValue::from_str(host))?;
        set(&address, "port", JsValue::from(port))?;
        let options = js_sys::Object::new();
        set(&options, "secureTransport", JsValue::from_str(secure_transport))?;
        set(&options, "allowHalfOpen", JsValue::FALSE)?;
        Conn::new(worker_sys::connect(address.into(), options.into()).map_err(js_error)?)
    }

    fn new(socket: worker_sys::Socket) -> io::Result<Conn> {
        let reader = ChunkReader::new(&socket.readable().map_err(js_error)?);
        let writer = socket.writable().map_err(js_error)?.get_writer().map_err(js_error)?;
        Ok(Conn {
            socket,
            reader,
            writer,
            unsettled: Unsettled::default(),
            settling: None,
            closing: None,
            rest: Vec::new(),
        })
    }

    /// Resolves once the connection (and, for implicit TLS, the handshake) is established.
    pub async fn opened(&self) -> io::Result<()> {
        JsFuture::from(self.socket.opened().map_err(js_error)?).await.map(drop).map_err(js_error)
    }

    /// Upgrades to TLS (the socket must have been opened with `"starttls"`). The locks go back
    /// first: with them held, the upgraded socket never answers (tried: the send timed out).
    pub fn start_tls(self) -> io::Result<Conn> {
        self.reader.release();
        self.writer.release_lock();
        Conn::new(self.socket.start_tls().map_err(js_error)?)
    }

    /// Closes both directions at once.
    pub async fn close(self) {
        if let Ok(promise) = self.socket.close() {
            let _ = JsFuture::from(promise).await;
        }
    }

    /// Waits for the last write, if one is under way.
    fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(write) = self.unsettled.0.take() {
            self.settling = Some(JsFuture::from(write));
        }
        let Some(settling) = self.settling.as_mut() else { return Poll::Ready(Ok(())) };
        let result = std::task::ready!(Pin::new(settling).poll(cx));
        self.settling = None;
        Poll::Ready(result.map(drop).map_err(js_error))
    }

    /// Hands out what is left of the last chunk.
    fn take_rest(&mut self, buf: &mut ReadBuf<'_>) {
        let n = buf.remaining().min(self.rest.len());
        buf.put_slice(&self.rest[..n]);
        self.rest.drain(..n);
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.rest.is_empty() {
            this.take_rest(buf);
            return Poll::Ready(Ok(()));
        }
        if this.settling.is_some() {
            std::task::ready!(this.poll_settled(cx))?;
        }
        if !this.reader.is_reading() {
            if let Some(write) = this.unsettled.0.take() {
                this.reader.start_after(&write);
            }
        }
        // The end of the stream reads as zero bytes.
        let Some(bytes) = std::task::ready!(this.reader.poll_chunk(cx))? else { return Poll::Ready(Ok(())) };
        let len = bytes.length() as usize;
        if len <= buf.remaining() {
            let into = &mut buf.initialize_unfilled_to(len)[..len];
            bytes.copy_to(into);
            buf.advance(len);
        } else {
            this.rest = bytes.to_vec();
            this.take_rest(buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_settled(cx))?;
        let chunk = js_sys::Uint8Array::from(buf);
        this.unsettled.0 = Some(this.writer.write_with_chunk(&chunk));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_settled(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_settled(cx))?;
        let this = &mut *self;
        let closing = this.closing.get_or_insert_with(|| JsFuture::from(this.writer.close()));
        Pin::new(closing).poll(cx).map(|result| result.map(drop).map_err(js_error))
    }
}
