//! The fuzz targets (`fuzz/targets/*.rs`) on the stable toolchain: a bounded,
//! mutation-based loop over the same `run` functions the libFuzzer targets call.
//! No coverage feedback (that needs nightly's sanitizer builds); instead each target
//! starts from valid inputs (encoded frames, real invites, genuine ciphertext),
//! mutates them byte-wise and with format tokens, and keeps every mutant the target
//! accepted as a new starting point.
//!
//! Plain `cargo test` runs a fixed number of inputs per target. `.ci/run` sets
//! `AGENTROOM_FUZZ_SECS=20` and prints the executions each target reached.
//! `AGENTROOM_FUZZ_SEED=N` replays a run; a failure prints the input in hex.

// Truncating casts are the point in a PRNG and in seed bytes.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::cast_possible_truncation
)]

#[path = "../../fuzz/targets/decrypt_body.rs"]
mod decrypt_body;
#[path = "../../fuzz/targets/frame_decode.rs"]
mod frame_decode;
#[path = "../../fuzz/targets/invite_parse.rs"]
mod invite_parse;
mod mutate;
mod seeds;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mutate::{SplitMix, mutate};

/// Inputs per target under plain `cargo test` (a few seconds in a debug build).
const QUICK_INPUTS: u64 = 20_000;
/// The slow target (it builds a fresh session per input) gets fewer.
const QUICK_INPUTS_DECRYPT: u64 = 500;
/// Largest mutant kept, well above any frame or invite.
const MAX_INPUT: usize = 16 * 1024;
/// Corpus size cap: beyond it accepted mutants replace random entries.
const MAX_CORPUS: usize = 2048;

/// How long (or how many inputs) each target runs.
enum Budget {
    Time(Duration),
    Inputs(u64),
}

fn budget(quick: u64) -> Budget {
    match std::env::var("AGENTROOM_FUZZ_SECS").ok().and_then(|s| s.parse::<u64>().ok()) {
        Some(secs) => Budget::Time(Duration::from_secs(secs)),
        None => Budget::Inputs(quick),
    }
}

fn seed() -> u64 {
    std::env::var("AGENTROOM_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_nanos() as u64
    })
}

/// Run `target` from `seeds` within `budget`; panics (with the input) on a failure.
fn fuzz(name: &str, target: fn(&[u8]) -> bool, seeds: Vec<Vec<u8>>, budget: Budget) {
    let seed = seed();
    let mut rng = SplitMix(seed);
    let mut corpus = seeds;
    for s in &corpus {
        assert!(target(s), "{name}: a seed input is not accepted: {}", String::from_utf8_lossy(s));
    }
    let mut known: HashSet<Vec<u8>> = corpus.iter().cloned().collect();
    let started = Instant::now();
    let (mut execs, mut accepted) = (0u64, 0u64);
    loop {
        let done = match budget {
            Budget::Time(d) => execs % 64 == 0 && started.elapsed() >= d,
            Budget::Inputs(n) => execs >= n,
        };
        if done {
            break;
        }
        let base = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let input = mutate(base, other, &mut rng, MAX_INPUT);
        let result = std::panic::catch_unwind(|| target(&input));
        execs += 1;
        match result {
            Ok(true) => {
                accepted += 1;
                if known.insert(input.clone()) {
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(input);
                    } else {
                        let i = rng.below(corpus.len());
                        corpus[i] = input;
                    }
                }
            }
            Ok(false) => {}
            Err(panic) => {
                eprintln!(
                    "fuzz {name}: FAILED after {execs} inputs (AGENTROOM_FUZZ_SEED={seed}); input hex {}",
                    hex::encode(&input)
                );
                std::panic::resume_unwind(panic);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {execs} executions in {secs:.1} s ({:.0}/s), {accepted} accepted, corpus {}, seed {seed}",
        execs as f64 / secs.max(1e-9),
        corpus.len()
    );
    assert!(execs > 0);
}

#[test]
fn frame_decode() {
    fuzz("frame_decode", frame_decode::run, seeds::frames(), budget(QUICK_INPUTS));
}

#[test]
fn invite_parse() {
    fuzz("invite_parse", invite_parse::run, seeds::invites(), budget(QUICK_INPUTS));
}

#[test]
fn decrypt_body() {
    fuzz("decrypt_body", decrypt_body::run, seeds::bodies(), budget(QUICK_INPUTS_DECRYPT));
}
