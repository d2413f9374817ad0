//! A binary whose `#[global_allocator]` is `ShardAlloc`, installed with the three lines the
//! README shows: its allocations must really be served by shardalloc, and std's collections
//! must work on it.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use shardalloc::ShardAlloc;
#[global_allocator]
static GLOBAL: ShardAlloc = ShardAlloc;

#[test]
fn allocations_are_served_by_shardalloc() {
    let boxed = Box::new(42u64);
    assert!(shardalloc::is_in_heap(&*boxed), "Box not from shardalloc");

    let small: Vec<u8> = vec![1; 10];
    let medium: Vec<u8> = vec![2; 100_000];
    let large: Vec<u8> = vec![3; 8 << 20];
    for v in [&small, &medium, &large] {
        assert!(
            shardalloc::is_in_heap(v.as_ptr()),
            "Vec of {} not from shardalloc",
            v.len()
        );
    }

    let s = String::from("served by shardalloc");
    assert!(shardalloc::is_in_heap(s.as_ptr()));

    // The check is not trivially true: memory from the system allocator and the stack is not
    // shardalloc's (under the `override` feature the system allocator *is* shardalloc).
    #[cfg(not(feature = "override"))]
    unsafe {
        use std::alloc::{GlobalAlloc, Layout, System};
        let layout = Layout::from_size_align(64, 8).unwrap();
        let p = System.alloc(layout);
        assert!(!p.is_null());
        assert!(
            !shardalloc::is_in_heap(p),
            "System pointer reported as shardalloc's"
        );
        System.dealloc(p, layout);
    }
    let local = 0u64;
    assert!(!shardalloc::is_in_heap(&local));
}

#[test]
fn usable_size_of_a_box() {
    let b = Box::new([0u8; 100]);
    let usable = unsafe { ShardAlloc::usable_size(b.as_ptr()) };
    assert!(usable >= 100);
}

#[test]
fn vec_and_string_growth() {
    let mut v = Vec::new();
    for i in 0..200_000u64 {
        v.push(i * 3);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10).map(|i| i * 3).collect::<Vec<u64>>());

    let mut s = String::new();
    for i in 0..20_000 {
        s.push_str(&i.to_string());
        s.push(',');
    }
    let parsed: Vec<u32> = s
        .trim_end_matches(',')
        .split(',')
        .map(|x| x.parse().unwrap())
        .collect();
    assert_eq!(parsed.len(), 20_000);
    assert_eq!(parsed[12_345], 12_345);
}

#[test]
fn hash_and_tree_maps() {
    let mut hash: HashMap<String, Vec<u32>> = HashMap::new();
    let mut tree: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..4u32 {
        for i in 0..20_000u32 {
            hash.entry(format!("key-{}", i % 5_000))
                .or_default()
                .push(i + round);
            tree.insert(u64::from(i) * 7 + u64::from(round), format!("v{i}"));
        }
        // Remove about half, so freed blocks get reused by the next round.
        hash.retain(|k, _| k.len() % 2 == 0);
        let keys: Vec<u64> = tree.keys().copied().filter(|k| k % 3 == 0).collect();
        for k in keys {
            tree.remove(&k);
        }
    }
    assert!(hash.values().all(|v| !v.is_empty()));
    assert!(tree.keys().all(|k| k % 3 != 0));
    assert!(tree.values().all(|v| v.starts_with('v')));

    let set: HashSet<u64> = (0..50_000).collect();
    let bset: BTreeSet<u64> = set.iter().map(|x| x * 2).collect();
    assert_eq!(set.len(), bset.len());
    assert_eq!(bset.iter().next_back(), Some(&99_998));
}

#[test]
fn other_collections_and_smart_pointers() {
    let mut deque: VecDeque<Box<u32>> = VecDeque::new();
    for i in 0..10_000 {
        if i % 2 == 0 {
            deque.push_back(Box::new(i));
        } else {
            deque.push_front(Box::new(i));
        }
    }
    assert_eq!(deque.len(), 10_000);

    let mut heap: BinaryHeap<u32> = (0..10_000).rev().collect();
    assert_eq!(heap.pop(), Some(9_999));

    let list: LinkedList<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(list.iter().map(String::len).sum::<usize>(), 2890);

    let shared = Rc::new(vec![1u8; 1000]);
    let copies: Vec<Rc<Vec<u8>>> = (0..100).map(|_| Rc::clone(&shared)).collect();
    assert_eq!(Rc::strong_count(&shared), 101);
    drop(copies);

    let arc: Arc<str> = Arc::from("shared text");
    assert!(shardalloc::is_in_heap(Arc::as_ptr(&arc)));
}

#[test]
fn over_aligned_types() {
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    #[repr(align(64))]
    struct Line(#[allow(dead_code)] [u8; 64]);

    let pages: Vec<Box<Page>> = (0..16).map(|i| Box::new(Page([i as u8; 4096]))).collect();
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(&**p as *const Page as usize % 4096, 0);
        assert!(p.0.iter().all(|&b| b == i as u8));
    }
    let lines: Vec<Line> = (0..1000).map(|_| Line([0; 64])).collect();
    assert_eq!(lines.as_ptr() as usize % 64, 0);
}

#[test]
fn collect_and_thread_done_keep_blocks_valid() {
    let kept: Vec<String> = (0..10_000).map(|i| format!("item {i}")).collect();
    drop((0..10_000).map(|i| vec![i as u8; 100]).collect::<Vec<_>>());
    shardalloc::collect(false);
    shardalloc::collect(true);
    assert_eq!(kept[9_999], "item 9999");

    // In a separate thread, so the test harness's own thread keeps its heap.
    let kept = std::thread::spawn(move || {
        let more: Vec<u64> = (0..1000).collect();
        shardalloc::thread_done();
        // Blocks made before stay valid, and the thread can allocate again.
        let again: Vec<u64> = more.iter().map(|x| x + 1).collect();
        assert_eq!(again[999], 1000);
        kept
    })
    .join()
    .unwrap();
    assert_eq!(kept.len(), 10_000);
}
