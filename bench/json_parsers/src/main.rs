//! Parse + serialise every message of a file (one JSON value per line) with
//! three Rust JSON libraries, CPU time of 3 rounds each; `run.sh` times orjson's
//! loads + dumps of the same messages beside it.
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("usage: json-parsers-bench MESSAGES.ndjson");
    let data = std::fs::read(path).expect("readable messages");
    let messages: Vec<&[u8]> = data.split(|b| *b == b'\n').filter(|m| !m.is_empty()).collect();
    for _ in 0..3 {
        let started = Instant::now();
        let mut bytes = 0usize;
        for m in &messages {
            let value: serde_json::Value = serde_json::from_slice(m).expect("JSON");
            bytes += serde_json::to_vec(&value).expect("serialised").len();
        }
        println!("serde_json (preserve_order) {:.4} s, {bytes} bytes", started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut bytes = 0usize;
        for m in &messages {
            let mut buffer = m.to_vec();
            let value = simd_json::to_borrowed_value(&mut buffer).expect("JSON");
            bytes += simd_json::to_vec(&value).expect("serialised").len();
        }
        println!("simd-json (borrowed) {:.4} s, {bytes} bytes", started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut bytes = 0usize;
        for m in &messages {
            let value: sonic_rs::Value = sonic_rs::from_slice(m).expect("JSON");
            bytes += sonic_rs::to_vec(&value).expect("serialised").len();
        }
        println!("sonic-rs {:.4} s, {bytes} bytes", started.elapsed().as_secs_f64());
    }
}
