//! Benchmark: frames and builds 100k ~250-byte `<message>` stanzas and prints ns/stanza.
//!
//! Run with `cargo run --release -p rampart-xml --example framer_bench`.

use std::time::Instant;

use rampart_xml::{Event, Framer, Limits};

const HDR: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
const N: usize = 100_000;

fn message(i: usize) -> Vec<u8> {
    format!(
        "<message from='juliet@example.com/balcony' to='romeo@example.net' type='chat' id='m{i:06}'>\
         <body>Wherefore art thou, Romeo? Deny thy father and refuse thy name &amp; be but sworn my love.</body>\
         <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    )
    .into_bytes()
}

/// Feed `chunks` to a fresh framer and count stanzas; returns elapsed ns.
fn run(chunks: &[Vec<u8>]) -> (u128, usize) {
    let mut f = Framer::new(Limits::default());
    f.feed(HDR);
    let mut n = 0;
    let t = Instant::now();
    for c in chunks {
        f.feed(c);
        while let Some(ev) = f.next_event().expect("valid input") {
            if let Event::Stanza(el) = ev {
                n += 1;
                std::hint::black_box(el);
            }
        }
    }
    (t.elapsed().as_nanos(), n)
}

fn main() {
    let msgs: Vec<Vec<u8>> = (0..N).map(message).collect();
    let avg_len = msgs.iter().map(Vec::len).sum::<usize>() / N;

    // One socket read per stanza.
    let _ = run(&msgs[..N / 10]); // warm-up
    let (ns, n) = run(&msgs);
    assert_eq!(n, N, "all stanzas framed");
    println!(
        "{N} stanzas of ~{avg_len} bytes, one feed per stanza: {:.0} ns/stanza",
        ns as f64 / N as f64
    );

    // Many stanzas per 16 KiB read, split at arbitrary offsets.
    let all: Vec<u8> = msgs.concat();
    let chunks: Vec<Vec<u8>> = all.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    let (ns, n) = run(&chunks);
    assert_eq!(n, N);
    println!(
        "{N} stanzas in 16 KiB reads:                {:.0} ns/stanza",
        ns as f64 / N as f64
    );

    // Reference: allocation floor, cloning (and dropping) the same element tree.
    let mut f = Framer::new(Limits::default());
    f.feed(HDR);
    f.feed(&msgs[0]);
    let _ = f.next_event();
    if let Ok(Some(Event::Stanza(el))) = f.next_event() {
        let t = Instant::now();
        for _ in 0..N {
            std::hint::black_box(el.clone());
        }
        let ns = t.elapsed().as_nanos();
        println!(
            "reference: Element::clone of the same tree:  {:.0} ns/stanza",
            ns as f64 / N as f64
        );
    }

    // Stanzas split into 7-byte reads (slow sender).
    let small: Vec<Vec<u8>> = all[..all.len() / 10]
        .chunks(7)
        .map(<[u8]>::to_vec)
        .collect();
    let (ns, n) = run(&small);
    println!(
        "{n} stanzas in 7-byte reads:                {:.0} ns/stanza",
        ns as f64 / n.max(1) as f64
    );
}
