//! DKIM signatures with the runtime's WebCrypto (`crypto.subtle`; the `worker` crate wraps
//! only its digests): the private key is imported once per isolate and stays a `CryptoKey`
//! (not extractable) from then on.

use std::cell::RefCell;

use worker::js_sys;
use worker::js_sys::{Array, Object, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

use crate::dkim::{Algorithm, DkimKey};

thread_local! {
    /// The imported key, with the PKCS#8 bytes it came from (settings change only with a new
    /// isolate, but a key is never used for bytes it was not imported from).
    static IMPORTED: RefCell<Option<(Vec<u8>, JsValue)>> = const { RefCell::new(None) };
}

fn object(pairs: &[(&str, &str)]) -> Result<JsValue, JsValue> {
    let object = Object::new();
    for (key, value) in pairs {
        Reflect::set(&object, &JsValue::from_str(key), &JsValue::from_str(value))?;
    }
    Ok(object.into())
}

/// Calls `subtle[method](...args)` and awaits its promise.
async fn call(subtle: &JsValue, method: &str, args: &[JsValue]) -> Result<JsValue, JsValue> {
    let function: js_sys::Function = Reflect::get(subtle, &JsValue::from_str(method))?.dyn_into()?;
    let promise: js_sys::Promise = function.apply(subtle, &args.iter().collect::<Array>())?.dyn_into()?;
    JsFuture::from(promise).await
}

/// The signature of `data` (see [`crate::dkim::prepare`] for what `data` is per algorithm).
pub async fn sign(key: &DkimKey, data: &[u8]) -> Result<Vec<u8>, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    let subtle = Reflect::get(&crypto, &JsValue::from_str("subtle"))?;
    let algorithm = match key.algorithm {
        Algorithm::RsaSha256 => object(&[("name", "RSASSA-PKCS1-v1_5"), ("hash", "SHA-256")])?,
        Algorithm::Ed25519Sha256 => object(&[("name", "Ed25519")])?,
    };
    let cached = IMPORTED.with(|imported| {
        imported.borrow().as_ref().filter(|(pkcs8, _)| *pkcs8 == key.pkcs8).map(|(_, crypto_key)| crypto_key.clone())
    });
    let crypto_key = match cached {
        Some(crypto_key) => crypto_key,
        None => {
            let der = Uint8Array::from(key.pkcs8.as_slice());
            let usages = Array::of1(&JsValue::from_str("sign"));
            let args = [JsValue::from_str("pkcs8"), der.into(), algorithm.clone(), JsValue::FALSE, usages.into()];
            let crypto_key = call(&subtle, "importKey", &args).await?;
            IMPORTED.with(|imported| *imported.borrow_mut() = Some((key.pkcs8.clone(), crypto_key.clone())));
            crypto_key
        }
    };
    let signature = call(&subtle, "sign", &[algorithm, crypto_key, Uint8Array::from(data).into()]).await?;
    Ok(Uint8Array::new(&signature).to_vec())
}
