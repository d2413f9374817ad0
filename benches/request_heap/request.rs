//! The request of the `request_heap` group, shared with `examples/request_probe.rs` (which
//! includes this file), so that the profiled program and the benchmark build the same objects.
//! The includer provides `Rng` (a xorshift generator with `below(n)`).

use std::hint::black_box;

use allocator_api2::alloc::Allocator;
use allocator_api2::vec::Vec as AVec;
use hashbrown::{DefaultHashBuilder, HashMap};

use super::Rng;

/// What a request keeps until its end.
pub struct Request<A: Allocator + Copy> {
    pub strings: AVec<AVec<u8, A>, A>,
    pub index: HashMap<u64, AVec<u64, A>, DefaultHashBuilder, A>,
}

/// Builds a request of `n` objects in `a`; returns it with a checksum of its contents.
pub fn build<A: Allocator + Copy>(a: A, n: usize) -> (Request<A>, u64) {
    const PIECES: [&[u8]; 4] = [b"GET /items/", b"?user=", b"&session=abcdef", b"; q=0.9"];
    let mut rng = Rng(0x5EED);
    let mut req = Request {
        strings: AVec::with_capacity_in(n, a),
        index: HashMap::with_hasher_in(DefaultHashBuilder::default(), a),
    };
    let mut sum = 0u64;
    for i in 0..n as u64 {
        let mut s = AVec::new_in(a);
        let len = 16 + rng.below(65) as usize;
        while s.len() < len {
            s.extend_from_slice(PIECES[(i as usize + s.len()) % 4]);
        }
        sum += s.len() as u64;
        req.strings.push(s);
        if i % 2 == 0 {
            let mut v = AVec::with_capacity_in(2 + rng.below(16) as usize, a);
            v.extend((0..v.capacity() as u64).map(|k| i ^ k));
            req.index.insert(i, v);
        }
        if i % 4 == 3 {
            // Done with an older entry and an older string: freed now.
            sum += req
                .index
                .remove(&((i / 2) & !1))
                .map_or(0, |v| v.len() as u64);
            let old = &mut req.strings[i as usize / 2];
            sum += old.len() as u64;
            *old = AVec::new_in(a);
        }
    }
    sum += req.index.len() as u64;
    (black_box(req), sum)
}
