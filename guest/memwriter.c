/*
 * memwriter: the guest program of ferry's QEMU driver. It runs as the guest's only workload and
 * makes every byte it owns checkable, so a host can tell whether a migration kept guest memory intact.
 *
 *   memwriter <fill_mib> <hot_mib> <rate_mb_per_s> [verify_mb_per_s]
 *
 * 1. Fills fill_mib MiB with pseudo-random data and records a 64-bit hash of every 4 KiB page, plus
 *    their sum (mod 2^64), the running checksum.
 * 2. Forever: rewrites random pages of the hot set (the first hot_mib MiB) with fresh random data at
 *    rate_mb_per_s MB/s (10^6 bytes; 0 = idle), keeping each page's hash and the running checksum
 *    up to date; re-hashes pages of the whole buffer in a cycle at verify_mb_per_s MB/s (default 64)
 *    and compares each against its recorded hash; at the end of each full sweep it also checks that
 *    the recorded hashes still add up to the running checksum.
 * 3. Every ~100 ms prints one heartbeat line on stdout (the serial console).
 *
 * Output, one line per write(2), fields separated by single spaces, numbers in decimal unless noted:
 *   ferry-memwriter start pages=<n> hot_pages=<n> rate_mbps=<n> verify_mbps=<n>
 *   ferry-memwriter ready fill_ms=<n> sum=<16 hex digits>
 *   ferry-hb seq=<n> ms=<n> written=<n> sum=<16 hex> verified=<n> sweeps=<n> bad=<n> state=ok|CORRUPT
 *   ferry-corrupt page=<n> want=<16 hex> got=<16 hex>      (first 16 mismatches only)
 *   ferry-memwriter error <text>                             (then exit status 1)
 * seq counts heartbeats from 0 with no gaps; ms is CLOCK_MONOTONIC since start; written counts bytes
 * rewritten after the fill; verified counts page checks since start; sweeps counts completed passes
 * over the whole buffer; bad counts failed checks (page hashes, or the sum at a sweep's end). state
 * is CORRUPT once bad > 0, and stays so.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_BYTES 4096u
#define PAGE_WORDS (PAGE_BYTES / 8u)
#define TICK_NS 10000000ll         /* the pacing slice: 10 ms */
#define TICKS_PER_HEARTBEAT 10     /* a heartbeat every 100 ms */
#define MAX_LAG_NS 100000000ll     /* a slower-than-wanted guest drops pacing debt beyond 100 ms */
#define MAX_CORRUPT_LINES 16

static uint64_t *mem;
static uint64_t *hashes;
static uint64_t pages, hot_pages, running_sum, rng_state;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  /* One write per line, so kernel messages cannot land inside a heartbeat. */
  ssize_t ignored = write(1, line, (size_t)n);
  (void)ignored;
}

static uint64_t next_random(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t page_hash(const uint64_t *page) {
  uint64_t h = 0x243F6A8885A308D3ull;
  for (unsigned i = 0; i < PAGE_WORDS; i++) {
    h = (h ^ page[i]) * 0x100000001B3ull;
    h ^= h >> 29;
  }
  return h;
}

static void rewrite_page(uint64_t index) {
  uint64_t *page = mem + index * PAGE_WORDS;
  for (unsigned i = 0; i < PAGE_WORDS; i++) page[i] = next_random();
  uint64_t h = page_hash(page);
  running_sum += h - hashes[index];
  hashes[index] = h;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static uint64_t parse_arg(const char *text, const char *name) {
  char *end;
  unsigned long long v = strtoull(text, &end, 10);
  if (*text == '\0' || *end != '\0') {
    say("ferry-memwriter error %s must be a non-negative integer, got '%s'", name, text);
    exit(1);
  }
  return (uint64_t)v;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 5) {
    say("ferry-memwriter error usage: memwriter <fill_mib> <hot_mib> <rate_mb_per_s> [verify_mb_per_s]");
    return 1;
  }
  uint64_t fill_mib = parse_arg(argv[1], "fill_mib");
  uint64_t hot_mib = parse_arg(argv[2], "hot_mib");
  uint64_t rate_mbps = parse_arg(argv[3], "rate_mb_per_s");
  uint64_t verify_mbps = argc == 5 ? parse_arg(argv[4], "verify_mb_per_s") : 64;
  if (fill_mib == 0 || hot_mib > fill_mib || verify_mbps == 0) {
    say("ferry-memwriter error need 0 < fill_mib, hot_mib <= fill_mib, verify_mb_per_s > 0");
    return 1;
  }
  pages = fill_mib * 256;
  hot_pages = hot_mib * 256;
  mem = mmap(NULL, pages * PAGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  hashes = calloc(pages, sizeof *hashes);
  if (mem == MAP_FAILED || hashes == NULL) {
    say("ferry-memwriter error cannot allocate %" PRIu64 " MiB", fill_mib);
    return 1;
  }
  say("ferry-memwriter start pages=%" PRIu64 " hot_pages=%" PRIu64 " rate_mbps=%" PRIu64 " verify_mbps=%" PRIu64,
      pages, hot_pages, rate_mbps, verify_mbps);

  int64_t start = now_ns();
  rng_state = (uint64_t)start ^ ((uint64_t)getpid() << 32);
  for (uint64_t i = 0; i < pages; i++) rewrite_page(i);
  say("ferry-memwriter ready fill_ms=%" PRId64 " sum=%016" PRIx64, (now_ns() - start) / 1000000, running_sum);

  /* Bytes per 10 ms slice, carried as a remainder so low rates still write. */
  uint64_t write_bytes_per_tick_x100 = rate_mbps * 1000000ull;
  uint64_t verify_pages_per_tick = verify_mbps * 1000000ull / 100 / PAGE_BYTES;
  if (verify_pages_per_tick == 0) verify_pages_per_tick = 1;
  uint64_t write_credit_x100 = 0, written = 0, verified = 0, sweeps = 0, bad = 0, cursor = 0, seq = 0;
  unsigned corrupt_lines = 0;
  int64_t next = now_ns();
  for (unsigned tick = 1;; tick++) {
    if (hot_pages > 0) {
      write_credit_x100 += write_bytes_per_tick_x100;
      while (write_credit_x100 >= PAGE_BYTES * 100ull) {
        rewrite_page(next_random() % hot_pages);
        write_credit_x100 -= PAGE_BYTES * 100ull;
        written += PAGE_BYTES;
      }
    }
    for (uint64_t k = 0; k < verify_pages_per_tick; k++) {
      uint64_t got = page_hash(mem + cursor * PAGE_WORDS);
      verified++;
      if (got != hashes[cursor]) {
        bad++;
        if (corrupt_lines++ < MAX_CORRUPT_LINES)
          say("ferry-corrupt page=%" PRIu64 " want=%016" PRIx64 " got=%016" PRIx64, cursor, hashes[cursor], got);
      }
      if (++cursor == pages) {
        uint64_t sum = 0;
        for (uint64_t i = 0; i < pages; i++) sum += hashes[i];
        if (sum != running_sum) {
          bad++;
          if (corrupt_lines++ < MAX_CORRUPT_LINES)
            say("ferry-corrupt page=sum want=%016" PRIx64 " got=%016" PRIx64, running_sum, sum);
        }
        cursor = 0;
        sweeps++;
      }
    }
    if (tick % TICKS_PER_HEARTBEAT == 0) {
      say("ferry-hb seq=%" PRIu64 " ms=%" PRId64 " written=%" PRIu64 " sum=%016" PRIx64 " verified=%" PRIu64
          " sweeps=%" PRIu64 " bad=%" PRIu64 " state=%s",
          seq++, (now_ns() - start) / 1000000, written, running_sum, verified, sweeps, bad, bad ? "CORRUPT" : "ok");
    }
    next += TICK_NS;
    int64_t now = now_ns();
    if (now - next > MAX_LAG_NS) next = now;
    if (next > now) {
      struct timespec until = {.tv_sec = next / 1000000000ll, .tv_nsec = next % 1000000000ll};
      clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
    }
  }
}
