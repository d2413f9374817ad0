//! A server's shape: worker threads take requests from a queue; each request parses its
//! input into strings, vectors and a hash map built in a `shardalloc::Heap` of its own, frees
//! what it is done with as it goes, answers, and drops the heap: all that is left of the
//! request goes in one step.
//!
//! ```text
//! cargo run --release --example request_heap [REQUESTS] [WORKERS]
//! ```

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use allocator_api2::vec::Vec as HVec;
use hashbrown::{DefaultHashBuilder, HashMap};
use shardalloc::Heap;

/// A request: `lines` lines of `user=<id> item=<id> qty=<n>`.
struct Request {
    id: u64,
    lines: u32,
}

/// The answer: how many distinct users and items, and the total quantity.
#[derive(Debug, PartialEq)]
struct Answer {
    id: u64,
    users: usize,
    items: usize,
    quantity: u64,
}

/// The request's body as it would arrive (made here; a real server reads it from a socket).
fn body<'h>(req: &Request, heap: &'h Heap) -> HVec<u8, &'h Heap> {
    let mut text = HVec::new_in(heap);
    for i in 0..req.lines as u64 {
        let (user, item) = ((req.id * 31 + i * 7) % 997, (i * i + req.id) % 113);
        let line = format!("user={user} item={item} qty={}\n", i % 9 + 1);
        text.extend_from_slice(line.as_bytes());
    }
    text
}

fn handle(req: &Request) -> Answer {
    let heap = Heap::new();
    let text = body(req, &heap);

    // Every field as a string of its own, as a parser would hand them out.
    let mut fields: HVec<HVec<u8, &Heap>, &Heap> = HVec::new_in(&heap);
    for word in text.split(|&b| b == b' ' || b == b'\n') {
        if let Some(value) = word.split(|&b| b == b'=').nth(1) {
            let mut s = HVec::with_capacity_in(value.len(), &heap);
            s.extend_from_slice(value);
            fields.push(s);
        }
    }
    drop(text); // parsed: the body's memory goes back to the heap for what follows

    // Per user, the items they asked for; per item, the quantity.
    let mut by_user: HashMap<&[u8], HVec<&[u8], &Heap>, DefaultHashBuilder, &Heap> =
        HashMap::with_hasher_in(DefaultHashBuilder::default(), &heap);
    let mut quantity: HashMap<&[u8], u64, DefaultHashBuilder, &Heap> =
        HashMap::with_hasher_in(DefaultHashBuilder::default(), &heap);
    for line in fields.chunks(3) {
        let [user, item, qty] = line else { continue };
        by_user
            .entry(user.as_slice())
            .or_insert_with(|| HVec::new_in(&heap))
            .push(item.as_slice());
        let n: u64 = std::str::from_utf8(qty).unwrap().parse().unwrap();
        *quantity.entry(item.as_slice()).or_insert(0) += n;
    }

    Answer {
        id: req.id,
        users: by_user.len(),
        items: quantity.len(),
        quantity: quantity.values().sum(),
    }
    // by_user, quantity, fields, then the heap with whatever is left in it
}

fn main() {
    let mut args = std::env::args().skip(1);
    let requests: u64 = args.next().map_or(2000, |a| a.parse().expect("REQUESTS"));
    let workers: usize = args.next().map_or(4, |a| a.parse().expect("WORKERS"));

    let (tx, rx) = mpsc::channel::<Request>();
    let rx = Arc::new(Mutex::new(rx));
    let (answers_tx, answers) = mpsc::channel::<Answer>();
    let start = Instant::now();
    let pool: Vec<_> = (0..workers)
        .map(|_| {
            let rx = Arc::clone(&rx);
            let answers_tx = answers_tx.clone();
            thread::spawn(move || loop {
                let next = rx.lock().unwrap().recv();
                let Ok(req) = next else { break };
                answers_tx.send(handle(&req)).unwrap();
            })
        })
        .collect();
    drop(answers_tx);
    for id in 0..requests {
        // Sizes vary: most requests are small, a few are large.
        let lines = if id % 50 == 0 {
            20_000
        } else {
            50 + (id % 7) as u32 * 100
        };
        tx.send(Request { id, lines }).unwrap();
    }
    drop(tx);

    let mut total = 0u64;
    let mut count = 0u64;
    for answer in answers {
        assert!(answer.users > 0 && answer.items > 0, "{answer:?}");
        total += answer.quantity;
        count += 1;
    }
    for worker in pool {
        worker.join().unwrap();
    }
    assert_eq!(count, requests);
    let elapsed = start.elapsed();
    let stats = shardalloc::stats();
    println!(
        "{requests} requests on {workers} workers in {:.1} ms, total quantity {total}; \
         pages left in use after the last heap: {} KiB",
        elapsed.as_secs_f64() * 1e3,
        stats.page_bytes / 1024
    );
}
