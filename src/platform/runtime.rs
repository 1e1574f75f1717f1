//! What the `worker` crate gave us besides bindings, written against the runtime directly: the
//! module's start (a panic hook, and the state worker-build's shim reads to replace an instance
//! that trapped), a `setTimeout` timer, and a log line. Depending on the `worker` crate linked
//! wasm-streams, whose exported stream classes kept their futures' code in the module.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};

/// The object worker-build's shim keeps in `globalThis.__worker_init_state`: it reads
/// `criticalError` before every call and, when set, replaces the wasm instance (a panic aborts,
/// and an aborted instance must not be called again).
fn init_state() -> JsValue {
    const NAME: &str = "__worker_init_state";
    let global = js_sys::global();
    let key = JsValue::from_str(NAME);
    match js_sys::Reflect::get(&global, &key) {
        Ok(state) if state.is_object() => state,
        _ => {
            let state = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&state, &"criticalError".into(), &JsValue::FALSE);
            let _ = js_sys::Reflect::set(&state, &"instanceId".into(), &JsValue::from(0));
            let _ = js_sys::Reflect::set(&global, &key, &state);
            state.into()
        }
    }
}

/// Read by the shim once, when the module loads.
#[wasm_bindgen(js_name = "__worker_init_state")]
pub fn worker_init_state() -> JsValue {
    init_state()
}

/// Runs when the module is instantiated: a panic is logged with its message and location, and
/// marks the instance for replacement. `private`: not exported by name as well, where
/// worker-build's shim would make it an RPC method of the Worker (`start`).
#[wasm_bindgen(start, private)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("Rust panic: {info}")));
        let _ = js_sys::Reflect::set(&init_state(), &"criticalError".into(), &JsValue::TRUE);
    }));
}

/// One line in the Worker's log.
pub fn log(line: &str) {
    web_sys::console::log_1(&JsValue::from_str(line));
}

/// A wait of `millis` on `setTimeout`, armed at its first poll. Dropped before it fires, it
/// clears its timeout, so a timer nobody waits for any more costs the runtime nothing.
pub struct Timer {
    millis: u32,
    armed: Option<(i32, Closure<dyn FnMut()>)>,
    fired: Rc<Cell<bool>>,
}

impl Timer {
    pub fn new(millis: u64) -> Timer {
        Timer { millis: millis.min(i32::MAX as u64) as u32, armed: None, fired: Rc::default() }
    }
}

fn global_scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.get() {
            return Poll::Ready(());
        }
        if self.armed.is_none() {
            let (fired, waker) = (self.fired.clone(), cx.waker().clone());
            let callback = Closure::<dyn FnMut()>::new(move || {
                fired.set(true);
                waker.wake_by_ref();
            });
            // setTimeout does not fail in workerd; if it did, this wait would never end (the
            // `worker` crate's timer panicked there instead), not end at once, which would turn
            // the session's deadline loop into a busy one.
            let id = global_scope()
                .set_timeout_with_callback_and_timeout_and_arguments_0(
                    callback.as_ref().unchecked_ref(),
                    self.millis as i32,
                )
                .unwrap_or(0);
            self.armed = Some((id, callback));
        }
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((id, _)) = &self.armed {
            if !self.fired.get() {
                global_scope().clear_timeout_with_handle(*id);
            }
        }
    }
}
