//! Ways for the hostile test plugins (`tests/plugins/*`) to misbehave inside the sandbox. Each is
//! written so the optimiser cannot remove it: the values pass through `black_box`.

use std::hint::black_box;

/// Spins forever: only the host's CPU-time deadline ends it.
pub fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB at a time, touching each, and keeps every one: only the host's memory cap
/// ends it.
pub fn bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        const CHUNK: usize = 1 << 20;
        hoard.push(black_box(Vec::with_capacity(CHUNK)));
        black_box(&hoard);
    }
}

/// Traps with a Rust panic (`unreachable` in the component).
pub fn panic(what: &str) -> ! {
    panic!("hostile test plugin: {what}")
}

/// Traps with the `unreachable` instruction itself.
pub fn unreachable() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// Recurses until the stack runs out: every frame keeps an address-taken array, so it uses both
/// the wasm stack and the shadow stack in linear memory, and the result of each call is used
/// after it returns, so no tail-call or accumulator rewrite can turn it into a loop.
#[inline(never)]
pub fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 8]);
    if frame[0] == u64::MAX {
        return 0;
    }
    black_box(recurse(frame[1] + 1)).wrapping_add(frame[2])
}

/// Burns CPU for `iterations` rounds of xorshift and returns the state (use it, or it is gone).
pub fn burn(iterations: u32) -> u64 {
    let mut state = black_box(0x2545_f491_4f6c_dd1du64);
    for _ in 0..iterations {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state = black_box(state);
    }
    state
}
