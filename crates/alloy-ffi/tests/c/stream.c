/* A C engine on a ring, through cshim/alloy.h's Arrow C stream functions.
 * Built and run by crates/alloy-ffi/tests/ffi_stream.rs with gcc against
 * target/release/liballoy_ffi.a.
 *
 *   stream read RING BATCHES ROWS     consume the ring: every batch is x:int64
 *                                     (x[i] = batch*ROWS + i) and s:utf8
 *                                     ("v<x>"); buffers must lie in the ring's
 *                                     mapping; two batches held at a time.
 *   stream publish RING BATCHES ROWS  produce: a hand-made ArrowArrayStream of
 *                                     x:int64 batches written into the ring.
 * Prints one "ok ..." line and exits 0, or says what failed and exits 1. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloy.h"

#define FAIL(...)                     \
  do {                                \
    fprintf(stderr, "FAIL: ");        \
    fprintf(stderr, __VA_ARGS__);     \
    fprintf(stderr, "\n");            \
    exit(1);                          \
  } while (0)

/* ---- the ring's mappings in this process, from /proc/self/maps ---- */

static uintptr_t map_lo[64], map_hi[64];
static int n_maps;

static void load_maps(const char *ring) {
  char suffix[512];
  snprintf(suffix, sizeof suffix, "/%s", ring);
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) FAIL("cannot open /proc/self/maps");
  char line[1024];
  n_maps = 0;
  while (fgets(line, sizeof line, f) && n_maps < 64) {
    line[strcspn(line, "\n")] = 0;
    size_t n = strlen(line), s = strlen(suffix);
    /* the path column ends with /RING (a deleted file adds " (deleted)") */
    if (n < s || strcmp(line + n - s, suffix) != 0) continue;
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
      map_lo[n_maps] = lo;
      map_hi[n_maps] = hi;
      n_maps++;
    }
  }
  fclose(f);
  if (n_maps == 0) FAIL("no mapping of %s in /proc/self/maps", ring);
}

static int in_mapping(const void *p, size_t len) {
  uintptr_t a = (uintptr_t)p;
  for (int i = 0; i < n_maps; i++)
    if (a >= map_lo[i] && a + len <= map_hi[i]) return 1;
  return 0;
}

/* ---- read ---- */

static int64_t check_batch(struct ArrowArray *a, int64_t batch, int64_t rows) {
  if (a->length != rows) FAIL("batch %" PRId64 ": %" PRId64 " rows, want %" PRId64, batch, a->length, rows);
  if (a->n_children != 2) FAIL("batch %" PRId64 ": %" PRId64 " columns", batch, a->n_children);
  struct ArrowArray *x = a->children[0], *s = a->children[1];
  const int64_t *xv = (const int64_t *)x->buffers[1] + x->offset;
  const int32_t *so = (const int32_t *)s->buffers[1] + s->offset;
  const char *sd = (const char *)s->buffers[2];
  if (!in_mapping(xv, (size_t)rows * 8)) FAIL("batch %" PRId64 ": x values at %p are not in the ring's mapping", batch, (void *)xv);
  if (!in_mapping(so, (size_t)(rows + 1) * 4)) FAIL("batch %" PRId64 ": s offsets not in the mapping", batch);
  if (!in_mapping(sd + so[0], (size_t)(so[rows] - so[0]))) FAIL("batch %" PRId64 ": s data not in the mapping", batch);
  int64_t sum = 0;
  for (int64_t i = 0; i < rows; i++) {
    int64_t want = batch * rows + i;
    if (xv[i] != want) FAIL("batch %" PRId64 " row %" PRId64 ": x=%" PRId64 ", want %" PRId64, batch, i, xv[i], want);
    char buf[32];
    int n = snprintf(buf, sizeof buf, "v%" PRId64, want);
    if (so[i + 1] - so[i] != n || memcmp(sd + so[i], buf, (size_t)n) != 0)
      FAIL("batch %" PRId64 " row %" PRId64 ": s=%.*s, want %s", batch, i, so[i + 1] - so[i], sd + so[i], buf);
    sum += xv[i];
  }
  return sum;
}

static int do_read(const char *ring, int64_t batches, int64_t rows) {
  struct AlloyStreamOptions opt;
  if (alloy_stream_options_init(&opt) != ALLOY_OK) FAIL("alloy_stream_options_init");
  opt.timeout_ms = 20000;
  struct ArrowArrayStream st;
  char *err = NULL;
  int64_t rc = alloy_ring_open_stream(ring, &opt, &st, &err);
  if (rc != ALLOY_OK) FAIL("alloy_ring_open_stream: %" PRId64 " %s", rc, err ? err : "");
  load_maps(ring);
  struct ArrowSchema schema;
  if (st.get_schema(&st, &schema) != 0) FAIL("get_schema: %s", st.get_last_error(&st));
  if (strcmp(schema.format, "+s") != 0 || schema.n_children != 2 ||
      strcmp(schema.children[0]->name, "x") != 0 || strcmp(schema.children[0]->format, "l") != 0 ||
      strcmp(schema.children[1]->name, "s") != 0 || strcmp(schema.children[1]->format, "u") != 0)
    FAIL("unexpected schema %s", schema.format);
  schema.release(&schema);
  /* Hold the previous batch while reading the next: slots are given back by
   * release, not by get_next. */
  struct ArrowArray held = {0}, cur;
  int64_t n = 0, sum = 0, total_rows = 0;
  for (;;) {
    if (st.get_next(&st, &cur) != 0) FAIL("get_next: %s", st.get_last_error(&st));
    if (cur.release == NULL) break; /* end of stream */
    sum += check_batch(&cur, n, rows);
    total_rows += cur.length;
    n++;
    if (held.release) held.release(&held);
    if (held.release != NULL) FAIL("release left the array unreleased");
    held = cur;
  }
  if (held.release) held.release(&held);
  /* After the end, get_next keeps answering the end. */
  if (st.get_next(&st, &cur) != 0 || cur.release != NULL) FAIL("get_next after the end is not the end");
  st.release(&st);
  if (st.release != NULL) FAIL("the stream's release left it unreleased");
  if (n != batches) FAIL("%" PRId64 " batches, want %" PRId64, n, batches);
  printf("ok read batches=%" PRId64 " rows=%" PRId64 " sum=%" PRId64 "\n", n, total_rows, sum);
  return 0;
}

/* ---- publish: a hand-made C stream of x:int64 batches ---- */

struct source {
  int64_t next, batches, rows;
  int64_t live_arrays; /* exported and not yet released by the consumer */
};

static const char *no_error(struct ArrowArrayStream *s) {
  (void)s;
  return NULL;
}

static void release_schema(struct ArrowSchema *s) {
  for (int64_t i = 0; i < s->n_children; i++) {
    struct ArrowSchema *c = s->children[i];
    if (c->release) c->release(c);
    free(c);
  }
  free(s->children);
  s->release = NULL;
}

static void release_child_schema(struct ArrowSchema *s) { s->release = NULL; }

static int get_schema(struct ArrowArrayStream *st, struct ArrowSchema *out) {
  (void)st;
  struct ArrowSchema *x = calloc(1, sizeof *x);
  *x = (struct ArrowSchema){.format = "l", .name = "x", .release = release_child_schema};
  struct ArrowSchema **children = malloc(sizeof *children);
  children[0] = x;
  *out = (struct ArrowSchema){.format = "+s", .name = "", .n_children = 1, .children = children,
                              .release = release_schema};
  return 0;
}

struct batch_data {
  struct source *src;
  int64_t *values;
  const void *child_buffers[2];
  const void *parent_buffers[1];
  struct ArrowArray child;
  struct ArrowArray *children[1];
};

static void release_child(struct ArrowArray *a) { a->release = NULL; }

static void release_batch(struct ArrowArray *a) {
  struct batch_data *d = a->private_data;
  d->src->live_arrays--;
  free(d->values);
  free(d);
  a->release = NULL;
}

static int get_next(struct ArrowArrayStream *st, struct ArrowArray *out) {
  struct source *src = st->private_data;
  if (src->next == src->batches) {
    memset(out, 0, sizeof *out); /* released: the end */
    return 0;
  }
  struct batch_data *d = calloc(1, sizeof *d);
  d->src = src;
  d->values = malloc((size_t)src->rows * 8);
  for (int64_t i = 0; i < src->rows; i++) d->values[i] = src->next * src->rows + i;
  d->child_buffers[0] = NULL;
  d->child_buffers[1] = d->values;
  d->child = (struct ArrowArray){.length = src->rows, .n_buffers = 2, .buffers = d->child_buffers,
                                 .release = release_child};
  d->children[0] = &d->child;
  d->parent_buffers[0] = NULL;
  *out = (struct ArrowArray){.length = src->rows, .n_buffers = 1, .buffers = d->parent_buffers,
                             .n_children = 1, .children = d->children, .release = release_batch,
                             .private_data = d};
  src->next++;
  src->live_arrays++;
  return 0;
}

static int stream_released;
static void release_stream(struct ArrowArrayStream *st) {
  stream_released++;
  st->release = NULL;
}

static int do_publish(const char *ring, int64_t batches, int64_t rows) {
  struct source src = {.batches = batches, .rows = rows};
  struct ArrowArrayStream st = {.get_schema = get_schema, .get_next = get_next,
                                .get_last_error = no_error, .release = release_stream,
                                .private_data = &src};
  struct AlloyPublishOptions opt;
  if (alloy_publish_options_init(&opt) != ALLOY_OK) FAIL("alloy_publish_options_init");
  opt.timeout_ms = 20000;
  struct AlloyPublishCounts counts;
  char *err = NULL;
  int64_t rc = alloy_ring_publish_stream(ring, &st, &opt, &counts, &err);
  if (rc != ALLOY_OK) FAIL("alloy_ring_publish_stream: %" PRId64 " %s", rc, err ? err : "");
  if (st.release != NULL || stream_released != 1) FAIL("the input stream was not released exactly once");
  if (src.live_arrays != 0) FAIL("%" PRId64 " input arrays not released", src.live_arrays);
  if ((int64_t)counts.batches != batches || (int64_t)counts.rows != batches * rows)
    FAIL("counts: %" PRIu64 " batches, %" PRIu64 " rows", counts.batches, counts.rows);
  /* An error path: a NULL input is refused with a message to free. */
  struct AlloyPublishCounts none;
  rc = alloy_ring_publish_stream(ring, NULL, &opt, &none, &err);
  if (rc != ALLOY_ERR_NULL_POINTER || err == NULL || none.batches != 0) FAIL("NULL input: %" PRId64, rc);
  alloy_string_free(err);
  printf("ok publish batches=%" PRIu64 " rows=%" PRIu64 " messages=%" PRIu64 " bytes=%" PRIu64 "\n",
         counts.batches, counts.rows, counts.messages, counts.bytes);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5) FAIL("usage: %s read|publish RING BATCHES ROWS", argv[0]);
  int64_t batches = atoll(argv[3]), rows = atoll(argv[4]);
  if (strcmp(argv[1], "read") == 0) return do_read(argv[2], batches, rows);
  if (strcmp(argv[1], "publish") == 0) return do_publish(argv[2], batches, rows);
  FAIL("unknown command %s", argv[1]);
}
