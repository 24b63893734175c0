//! Issue 13's codec question, measured: encode and decode of the payloads
//! a game server sends (a position update of about 40 bytes, a 1 KiB
//! batch, a 64 KiB snapshot) with JSON (today's only codec) and three
//! compact binary candidates: postcard, bincode 2 (standard config) and
//! MessagePack (rmp-serde, fields by name and as arrays). Prints each
//! encoding's size once.
//!
//! `cargo bench -p horizon-plugin-host --bench codecs`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A position update (the bench plugin's `Small`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
struct Small {
    player: u64,
    x: f32,
    y: f32,
    name: String,
}

fn small(i: u64) -> Small {
    Small {
        player: 42 + i,
        x: 1.5 + i as f32,
        y: -3.25,
        name: "alice".to_owned(),
    }
}

/// A batch of updates (about 1 KiB and 64 KiB in JSON).
#[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
struct Batch {
    tick: u64,
    moves: Vec<Small>,
}

fn batch(n: u64) -> Batch {
    Batch {
        tick: 7,
        moves: (0..n).map(small).collect(),
    }
}

type Encode<T> = fn(&T) -> Vec<u8>;
type Decode<T> = fn(&[u8]) -> T;

fn codecs<T: Serialize + DeserializeOwned>() -> Vec<(&'static str, Encode<T>, Decode<T>)> {
    vec![
        (
            "json",
            |v| serde_json::to_vec(v).unwrap(),
            |b| serde_json::from_slice(b).unwrap(),
        ),
        (
            "postcard",
            |v| postcard::to_stdvec(v).unwrap(),
            |b| postcard::from_bytes(b).unwrap(),
        ),
        (
            "bincode",
            |v| bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap(),
            |b| {
                bincode::serde::decode_from_slice(b, bincode::config::standard())
                    .unwrap()
                    .0
            },
        ),
        (
            "msgpack_named",
            |v| rmp_serde::to_vec_named(v).unwrap(),
            |b| rmp_serde::from_slice(b).unwrap(),
        ),
        (
            "msgpack",
            |v| rmp_serde::to_vec(v).unwrap(),
            |b| rmp_serde::from_slice(b).unwrap(),
        ),
    ]
}

fn measure<T>(c: &mut Criterion, label: &str, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let mut g = c.benchmark_group(format!("codec/{label}"));
    for (name, encode, decode) in codecs::<T>() {
        let bytes = encode(value);
        assert_eq!(&decode(&bytes), value, "{name} round-trips");
        println!("codec/{label}/{name}: {} bytes", bytes.len());
        g.bench_function(format!("{name}/encode"), |b| {
            b.iter(|| black_box(encode(black_box(value))))
        });
        g.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| black_box(decode(black_box(&bytes))))
        });
    }
    g.finish();
}

fn payloads(c: &mut Criterion) {
    measure(c, "small", &small(0));
    // About 1 KiB and 64 KiB of JSON.
    measure(c, "1k", &batch(20));
    measure(c, "64k", &batch(1300));
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = payloads
}
criterion_main!(benches);
