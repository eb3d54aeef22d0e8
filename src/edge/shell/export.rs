//! How a kind's Durable Object class is exported to the runtime.

/// Declares a kind's Durable Object: the class the runtime instantiates (exported to JS as
/// workers-rs exports one), whose handlers are the shell's. The socket handlers and a connect run
/// synchronously: workers-rs wraps every call in a promise and a spawned task, which cost ~16 %
/// of a room message's busy time; the other requests and the alarm return a promise.
macro_rules! durable_object {
    ($(#[$meta:meta])* $object:ident, $kind:ty) => {
        $(#[$meta])*
        #[wasm_bindgen::prelude::wasm_bindgen]
        pub struct $object {
            shell: std::rc::Rc<$crate::edge::shell::Shell<$kind>>,
        }

        #[wasm_bindgen::prelude::wasm_bindgen]
        impl $object {
            #[wasm_bindgen(constructor)]
            pub fn new(state: worker::worker_sys::DurableObjectState, env: worker::Env) -> Self {
                $object { shell: $crate::edge::shell::Shell::new(worker::State::from(state), env) }
            }

            /// A `Response`, or a promise of one.
            pub fn fetch(&self, req: worker::worker_sys::web_sys::Request) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
                fn answer(response: worker::Result<worker::worker_sys::web_sys::Response>) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
                    response.map(Into::into).map_err(wasm_bindgen::JsValue::from)
                }
                match self.shell.fetch(req) {
                    Ok(response) => answer(response),
                    Err(later) => Ok(worker::wasm_bindgen_futures::future_to_promise(async move { answer(later.await) }).into()),
                }
            }

            #[wasm_bindgen(js_name = webSocketMessage)]
            pub fn websocket_message(
                &self,
                ws: worker::worker_sys::web_sys::WebSocket,
                message: wasm_bindgen::JsValue,
            ) {
                self.shell.on_message(ws.into(), &message);
            }

            #[wasm_bindgen(js_name = webSocketClose)]
            pub fn websocket_close(
                &self,
                ws: worker::worker_sys::web_sys::WebSocket,
                code: usize,
                reason: String,
                _was_clean: bool,
            ) {
                self.shell.on_close(ws.into(), Some((code, reason)));
            }

            #[wasm_bindgen(js_name = webSocketError)]
            pub fn websocket_error(&self, ws: worker::worker_sys::web_sys::WebSocket, _error: wasm_bindgen::JsValue) {
                self.shell.on_close(ws.into(), None);
            }

            pub fn alarm(&self) -> js_sys::Promise {
                let shell = std::rc::Rc::clone(&self.shell);
                worker::wasm_bindgen_futures::future_to_promise(async move {
                    match shell.on_alarm().await {
                        Ok(response) => Ok(worker::worker_sys::web_sys::Response::from(response).into()),
                        Err(e) => Err(wasm_bindgen::JsValue::from(e)),
                    }
                })
            }
        }
    };
}
pub(crate) use durable_object;
