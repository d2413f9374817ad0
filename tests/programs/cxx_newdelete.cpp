// A C++ program that allocates through every form of operator new and delete, run by
// tests/preload.rs with and without LD_PRELOAD=libshardalloc.so: plain, array, nothrow,
// aligned (over-aligned types and explicit std::align_val_t), sized delete, a new_handler,
// std::bad_alloc, the standard containers, and objects deleted on other threads.
// stdout must be the same in both runs; stderr says whether the blocks were shardalloc's.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "progutil.h"

static served_t served;

struct Node {
  std::uint64_t value;
  std::string label;
  Node *next;
  explicit Node(std::uint64_t v) : value(v), label("node-" + std::to_string(v)), next(nullptr) {}
};

struct alignas(64) Line {
  unsigned char bytes[64];
};
struct alignas(4096) PageSized {
  unsigned char bytes[100];
};

static std::atomic<int> destroyed{0};
struct Counted {
  int id;
  Counted() : id(0) {}
  ~Counted() { destroyed.fetch_add(1, std::memory_order_relaxed); }
};

static bool aligned_to(const void *p, std::size_t a) {
  return reinterpret_cast<std::uintptr_t>(p) % a == 0;
}

static void plain_and_array() {
  Node *head = nullptr;
  for (std::uint64_t i = 0; i < 20000; i++) {
    Node *n = new Node(i);  // operator new(size_t); delete below is sized
    n->next = head;
    head = n;
  }
  served_note(&served, head);
  std::uint64_t sum = 0;
  std::size_t labels = 0;
  while (head != nullptr) {
    Node *next = head->next;
    sum += head->value;
    labels += head->label.size();
    delete head;
    head = next;
  }
  Counted *many = new Counted[1000];  // new[] with a cookie: delete[] runs 1000 destructors
  served_note(&served, many);
  delete[] many;
  char *raw = new char[12345];
  served_note(&served, raw);
  raw[12344] = 1;
  delete[] raw;
  std::printf("plain: sum %llu, labels %zu, destroyed %d\n", (unsigned long long)sum, labels,
              destroyed.load());
}

static void sized_delete() {
  for (std::size_t size = 1; size < 300000; size = size * 3 + 1) {
    void *p = ::operator new(size);
    served_note(&served, p);
    std::memset(p, 0x5A, size);
    ::operator delete(p, size);  // sized delete
    void *a = ::operator new[](size);
    ::operator delete[](a, size);
  }
  std::printf("sized: ok\n");
}

static void aligned() {
  std::vector<Line *> lines;
  for (int i = 0; i < 1000; i++) {
    Line *l = new Line();  // alignof 64: operator new(size_t, align_val_t)
    if (!aligned_to(l, 64)) std::printf("misaligned Line\n");
    lines.push_back(l);
  }
  served_note(&served, lines[0]);
  for (Line *l : lines) delete l;
  PageSized *pages = new PageSized[7];  // new[](size_t, align_val_t)
  served_note(&served, pages);
  bool pages_ok = aligned_to(pages, 4096) && aligned_to(&pages[6], 4096);
  delete[] pages;
  bool explicit_ok = true;
  for (std::size_t a = 8; a <= (1u << 20); a *= 2) {
    void *p = ::operator new(100 + a, std::align_val_t(a));
    void *q = ::operator new[](3 * a, std::align_val_t(a), std::nothrow);
    explicit_ok = explicit_ok && q != nullptr && aligned_to(p, a) && aligned_to(q, a);
    ::operator delete(p, 100 + a, std::align_val_t(a));  // sized and aligned
    ::operator delete[](q, std::align_val_t(a));
  }
  std::printf("aligned: pages %s, explicit %s\n", pages_ok ? "ok" : "BAD",
              explicit_ok ? "ok" : "BAD");
}

static int handler_calls = 0;
static void out_of_memory_handler() {
  handler_calls++;
  std::set_new_handler(nullptr);  // the next failure throws
}

static void nothrow_and_failure() {
  int *n = new (std::nothrow) int[1000];
  served_note(&served, n);
  bool small_ok = n != nullptr;
  delete[] n;
  const std::size_t impossible = std::size_t(1) << 62;
  char *none = new (std::nothrow) char[impossible];
  void *none_aligned = ::operator new(impossible, std::align_val_t(64), std::nothrow);
  bool caught = false;
  try {
    char *never = new char[impossible];
    never[0] = 1;
  } catch (const std::bad_alloc &) {
    caught = true;
  }
  std::set_new_handler(out_of_memory_handler);
  bool caught_after_handler = false;
  try {
    void *never = ::operator new(impossible);
    ::operator delete(never);
  } catch (const std::bad_alloc &) {
    caught_after_handler = true;
  }
  std::printf("nothrow: small %s, impossible %s %s; bad_alloc %s; handler called %d, then %s\n",
              small_ok ? "ok" : "BAD", none == nullptr ? "null" : "BAD",
              none_aligned == nullptr ? "null" : "BAD", caught ? "caught" : "BAD", handler_calls,
              caught_after_handler ? "caught" : "BAD");
}

static void containers_and_threads() {
  std::map<std::string, std::vector<int>> ordered;
  std::unordered_map<int, std::string> hashed;
  for (int i = 0; i < 30000; i++) {
    ordered["k" + std::to_string(i % 5000)].push_back(i);
    hashed[i] = std::string(static_cast<std::size_t>(i % 97), 'x');
  }
  for (int i = 0; i < 30000; i += 2) hashed.erase(i);
  std::size_t chars = 0;
  for (const auto &kv : hashed) chars += kv.second.size();

  // objects made on one thread, deleted on another
  std::vector<std::unique_ptr<Node>> made(8000);
  std::thread maker([&] {
    for (std::size_t i = 0; i < made.size(); i++) made[i].reset(new Node(i));
  });
  maker.join();
  std::atomic<std::uint64_t> sum{0};
  std::vector<std::thread> deleters;
  for (int t = 0; t < 4; t++) {
    deleters.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < made.size(); i += 4) {
        sum += made[i]->value;
        made[i].reset();
      }
    });
  }
  for (auto &th : deleters) th.join();
  auto shared = std::make_shared<std::vector<std::string>>(1000, "shared");
  std::printf("containers: %zu keys, %zu chars, cross-thread sum %llu, shared %zu\n",
              ordered.size(), chars, (unsigned long long)sum.load(), shared->size());
}

int main() {
  plain_and_array();
  sized_delete();
  aligned();
  nothrow_and_failure();
  containers_and_threads();
  served_report("new/delete blocks", &served);
  return 0;
}
