/* cfrac_like: small-object churn in the style of cfrac and espresso (written from their
 * published descriptions: programs whose time goes into many short-lived small allocations).
 *
 * Two interleaved workloads per thread:
 *  - bignum arithmetic: a table of TABLE long-lived numbers, each a heap array of 32-bit limbs.
 *    Each step multiplies two of them (result capped at CAP limbs), adds a third, divides by a
 *    small number; every intermediate is a fresh allocation freed right after use, results are
 *    normalised with a shrinking realloc, and the quotient replaces a table entry (so lifetimes
 *    range from one step to many).
 *  - expression trees: random trees of 40-byte nodes whose leaves own a small name string; each
 *    tree is evaluated, copied, and the copy replaces one of RING live trees (the original and
 *    the replaced tree are freed).
 * The checksum depends only on the arithmetic, never on addresses, so it must be the same
 * under every allocator.
 *
 * usage: cfrac_like [threads=1] [steps=1500000]
 * prints: the work done, the time, and the checksum.
 */
#include "bench_common.h"

#include <pthread.h>

#define TABLE 512
#define CAP 24
#define RING 64
#define TREE_DEPTH 7
#define TREE_EVERY 8

/* ---- bignums ---- */

typedef struct {
  uint32_t n; /* limbs in use, >= 1 */
  uint32_t d[];
} big_t;

static big_t *big_new(uint32_t n) {
  big_t *b = bench_check(malloc(sizeof(big_t) + n * sizeof(uint32_t)));
  b->n = n;
  return b;
}

static big_t *big_random(rng_t *r) {
  uint32_t n = (uint32_t)rng_range(r, 1, 6);
  big_t *b = big_new(n);
  for (uint32_t i = 0; i < n; i++) b->d[i] = (uint32_t)rng_next(r);
  if (b->d[n - 1] == 0) b->d[n - 1] = 1;
  return b;
}

/* Drops leading zero limbs; gives memory back with realloc when at least a quarter is unused. */
static big_t *big_norm(big_t *b) {
  uint32_t n = b->n;
  while (n > 1 && b->d[n - 1] == 0) n--;
  if (n + n / 3 < b->n) {
    b = bench_check(realloc(b, sizeof(big_t) + n * sizeof(uint32_t)));
  }
  b->n = n;
  return b;
}

static big_t *big_add(const big_t *a, const big_t *b) {
  if (a->n < b->n) {
    const big_t *t = a;
    a = b;
    b = t;
  }
  big_t *r = big_new(a->n + 1);
  uint64_t carry = 0;
  for (uint32_t i = 0; i < a->n; i++) {
    carry += (uint64_t)a->d[i] + (i < b->n ? b->d[i] : 0);
    r->d[i] = (uint32_t)carry;
    carry >>= 32;
  }
  r->d[a->n] = (uint32_t)carry;
  return big_norm(r);
}

/* a * b modulo 2^(32*CAP). */
static big_t *big_mul(const big_t *a, const big_t *b) {
  uint32_t n = a->n + b->n;
  if (n > CAP) n = CAP;
  big_t *r = big_new(n);
  memset(r->d, 0, n * sizeof(uint32_t));
  for (uint32_t i = 0; i < a->n && i < n; i++) {
    uint64_t carry = 0;
    for (uint32_t j = 0; j < b->n && i + j < n; j++) {
      carry += (uint64_t)a->d[i] * b->d[j] + r->d[i + j];
      r->d[i + j] = (uint32_t)carry;
      carry >>= 32;
    }
    if (i + b->n < n) r->d[i + b->n] = (uint32_t)carry;
  }
  return big_norm(r);
}

static big_t *big_divsmall(const big_t *a, uint32_t m, uint32_t *rem) {
  big_t *q = big_new(a->n);
  uint64_t r = 0;
  for (uint32_t i = a->n; i-- > 0;) {
    uint64_t cur = (r << 32) | a->d[i];
    q->d[i] = (uint32_t)(cur / m);
    r = cur % m;
  }
  *rem = (uint32_t)r;
  return big_norm(q);
}

/* ---- expression trees ---- */

typedef struct node_s {
  int op; /* 0 leaf, 1 add, 2 mul, 3 xor */
  struct node_s *l, *r;
  char *name;
  uint64_t val;
} node_t;

static node_t *tree_build(rng_t *r, int depth) {
  node_t *n = bench_check(malloc(sizeof(node_t)));
  if (depth == 0 || rng_below(r, 10) < 3) {
    n->op = 0;
    n->l = n->r = NULL;
    size_t len = rng_range(r, 2, 14);
    n->name = bench_check(malloc(len + 1));
    for (size_t i = 0; i < len; i++) n->name[i] = (char)('a' + rng_below(r, 26));
    n->name[len] = '\0';
    n->val = rng_next(r);
  } else {
    n->op = 1 + (int)rng_below(r, 3);
    n->name = NULL;
    n->val = 0;
    n->l = tree_build(r, depth - 1);
    n->r = tree_build(r, depth - 1);
  }
  return n;
}

static uint64_t tree_eval(const node_t *n) {
  switch (n->op) {
  case 0: return n->val ^ (uint64_t)strlen(n->name);
  case 1: return tree_eval(n->l) + tree_eval(n->r);
  case 2: return tree_eval(n->l) * (tree_eval(n->r) | 1);
  default: return tree_eval(n->l) ^ (tree_eval(n->r) >> 3);
  }
}

static node_t *tree_copy(const node_t *n) {
  node_t *c = bench_check(malloc(sizeof(node_t)));
  *c = *n;
  if (n->op == 0) {
    c->name = bench_check(strdup(n->name));
  } else {
    c->l = tree_copy(n->l);
    c->r = tree_copy(n->r);
  }
  return c;
}

static void tree_free(node_t *n) {
  if (n == NULL) return;
  if (n->op == 0) free(n->name);
  else {
    tree_free(n->l);
    tree_free(n->r);
  }
  free(n);
}

/* ---- driver ---- */

typedef struct {
  long id, steps;
  uint64_t checksum;
} job_t;

static void *run_job(void *arg) {
  job_t *job = arg;
  rng_t r;
  rng_seed(&r, (uint64_t)job->id);
  big_t *table[TABLE];
  node_t *ring[RING] = {0};
  for (int i = 0; i < TABLE; i++) table[i] = big_random(&r);
  uint64_t sum = 0;

  for (long s = 0; s < job->steps; s++) {
    size_t i = rng_below(&r, TABLE), j = rng_below(&r, TABLE), k = rng_below(&r, TABLE);
    big_t *prod = big_mul(table[i], table[j]);
    big_t *total = big_add(prod, table[k]);
    free(prod);
    uint32_t rem;
    big_t *q = big_divsmall(total, (uint32_t)rng_range(&r, 3, 1u << 20) | 1u, &rem);
    free(total);
    sum = sum * 31 + rem + q->n;
    free(table[i]);
    if (rng_below(&r, 4) == 0) {
      free(q);
      table[i] = big_random(&r);
    } else {
      table[i] = q;
    }

    if (s % TREE_EVERY == 0) {
      node_t *t = tree_build(&r, TREE_DEPTH);
      sum = sum * 31 + tree_eval(t);
      node_t *c = tree_copy(t);
      tree_free(t);
      size_t slot = rng_below(&r, RING);
      tree_free(ring[slot]);
      ring[slot] = c;
    }
  }

  for (int i = 0; i < TABLE; i++) free(table[i]);
  for (int i = 0; i < RING; i++) {
    if (ring[i]) sum += tree_eval(ring[i]);
    tree_free(ring[i]);
  }
  job->checksum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv, "usage: cfrac_like [threads=1] [steps=1500000]\n");
  long threads = arg_long(argc, argv, 1, 1);
  long steps = arg_long(argc, argv, 2, 1500000);

  job_t *jobs = bench_check(calloc((size_t)threads, sizeof(job_t)));
  double t0 = now_s();
  for (long t = 0; t < threads; t++) {
    jobs[t].id = t;
    jobs[t].steps = steps;
  }
  bench_run_jobs(threads, run_job, jobs, sizeof(job_t));
  double elapsed = now_s() - t0;

  uint64_t checksum = 0;
  for (long t = 0; t < threads; t++) checksum ^= jobs[t].checksum;
  printf("cfrac_like: %ld threads x %ld steps (bignums + trees): %.3f s, checksum %016llx\n",
         threads, steps, elapsed, (unsigned long long)checksum);
  free(jobs);
  return 0;
}
