/*
 * jsonbench.c - what reading a request body costs: today's lenient
 * top-level scan (json_scan_top, then jsmn on stream_options) against
 * the strict reading (json_strict_read on the body, then on
 * stream_options), on chat bodies: mostly one long "content" string.
 *
 *   jsonbench [-n ROUNDS] [-c CALLS] [BODY ...]
 *					BODY: 1k 100k 100k-cjk 100k-x
 *
 * 1k and 100k are English prose with a \n or \" escape every ~60 bytes;
 * 100k-cjk is Chinese (3-byte UTF-8), the worst case for the string
 * loop; 100k-x is what `make bench` sends ("x" repeated).  Each line:
 * the body's size, ns per body for each reader (best of ROUNDS timed
 * batches), and the ratio; with -c, no timing: each reader is called
 * CALLS times on each body, for callgrind.  Built from the usual objects:
 *
 *   make build/obj/bench/jsonbench.o build/libsluice.a
 *   cc -o build/jsonbench build/obj/bench/jsonbench.o build/libsluice.a
 *
 * Instructions rather than time (no hardware counters needed):
 *
 *   valgrind --tool=callgrind --callgrind-out-file=build/jsonbench.cg \
 *       --toggle-collect=read_scan --toggle-collect=read_strict \
 *       build/jsonbench -c 10 100k
 *   callgrind_annotate --inclusive=yes build/jsonbench.cg | grep read_
 *
 * (instructions per call: the figure over 10).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/json_scan.h"
#include "common/json_strict.h"

#define BATCH_NS	20000000	/* one timed batch: about 20 ms */

static const char *const words[] = {
	"the", "model", "should", "answer", "questions", "about", "a",
	"document", "that", "describes", "how", "requests", "are", "routed",
	"priced", "and", "metered", "by", "gateway", "with", "care", "for",
	"every", "byte", "of", "input", "it", "reads",
};
static const char *const hanzi[] = {
	"\xe8\xaf\xb7", "\xe6\x80\xbb", "\xe7\xbb\x93", "\xe4\xb8\x8b",
	"\xe9\x9d\xa2", "\xe7\x9a\x84", "\xe6\x96\x87", "\xe6\xa1\xa3",
	"\xe5\x86\x85", "\xe5\xae\xb9", "\xef\xbc\x8c", "\xe3\x80\x82",
};

static unsigned long	 seed = 1;

static unsigned
rnd(unsigned n)
{
	seed = seed * 6364136223846793005UL + 1442695040888963407UL;
	return (unsigned)(seed >> 33) % n;
}

/* A chat request whose user content is about SIZE bytes of KIND. */
static char *
chat_body(size_t size, const char *kind, size_t *len)
{
	char	*b = malloc(size + 1024), *p;
	size_t	 n = 0, k;

	if (b == NULL)
		exit(1);
	p = b + sprintf(b, "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":"
	    "\"system\",\"content\":\"You are a helpful assistant.\"},"
	    "{\"role\":\"user\",\"content\":\"");
	while (n < size) {
		if (strcmp(kind, "x") == 0)
			k = (size_t)sprintf(p + n, "x");
		else if (strcmp(kind, "cjk") == 0)
			k = (size_t)sprintf(p + n, "%s", hanzi[rnd(12)]);
		else if (rnd(12) == 0)
			k = (size_t)sprintf(p + n, rnd(2) ? "\\n" : " \\\"%s\\\"",
			    words[rnd(28)]);
		else
			k = (size_t)sprintf(p + n, " %s", words[rnd(28)]);
		n += k;
	}
	n += (size_t)(p - b);
	n += (size_t)sprintf(b + n, "\"}],\"stream\":true,\"stream_options\":"
	    "{\"include_usage\":true},\"temperature\":0.7,\"max_tokens\":512}");
	*len = n;
	return b;
}

/* What client_dispatch() and client_ask_stream_usage() do today. */
__attribute__((noinline)) static int
read_scan(const char *js, size_t len, struct json_doc *d)
{
	struct json_field f[3] = { { .key = "model" }, { .key = "stream" },
	    { .key = "stream_options" } };

	if (json_scan_top(js, len, f, 3) == -1 || f[0].count != 1 ||
	    f[2].type != JV_OBJECT ||
	    json_parse(d, js + f[2].start, f[2].end - f[2].start) == -1)
		return -1;
	return json_get(d, 0, "include_usage") >= 0 ? 0 : -1;
}

/* The same with the strict reader. */
__attribute__((noinline)) static int
read_strict(const char *js, size_t len)
{
	char				 model[128];
	struct json_strict_field	 f[3] = {
		{ .key = "model", .buf = model, .bufsize = sizeof(model) },
		{ .key = "stream" }, { .key = "stream_options" },
	};
	struct json_strict_field	 iu[1] = { { .key = "include_usage" } };

	if (json_strict_read(js, len, f, 3, NULL) != JSON_STRICT_OK ||
	    !f[0].printable || f[2].type != JV_OBJECT ||
	    json_strict_read(js + f[2].start, f[2].end - f[2].start, iu, 1,
	    NULL) != JSON_STRICT_OK)
		return -1;
	return iu[0].type == JV_TRUE ? 0 : -1;
}

/* ns per call of reader WHICH on JS, best batch of ROUNDS. */
static double
time_reader(int which, const char *js, size_t len, struct json_doc *d,
    int rounds)
{
	double	 best = 0, ns;
	long	 n = 1, i;
	int64_t	 t0;
	int	 r;

	/* size the batch to about BATCH_NS */
	for (;;) {
		t0 = now_us();
		for (i = 0; i < n; i++)
			if ((which ? read_strict(js, len) :
			    read_scan(js, len, d)) != 0)
				return -1;
		if ((now_us() - t0) * 1000 >= BATCH_NS / 4 || n > 1L << 30)
			break;
		n *= 2;
	}
	n *= 4;
	for (r = 0; r < rounds; r++) {
		t0 = now_us();
		for (i = 0; i < n; i++)
			(void)(which ? read_strict(js, len) :
			    read_scan(js, len, d));
		ns = (double)(now_us() - t0) * 1000 / (double)n;
		if (r == 0 || ns < best)
			best = ns;
	}
	return best;
}

int
main(int argc, char **argv)
{
	static const char *const all[] = { "1k", "100k", "100k-cjk",
	    "100k-x" };
	struct json_doc	 d = { .max_tokens = 1 << 16 };
	const char	*name, *kind;
	char		*js;
	size_t		 len, size;
	double		 a, b;
	int		 ch, rounds = 5, calls = 0, i, n, k;
	const char *const *bodies;

	while ((ch = getopt(argc, argv, "c:n:")) != -1) {
		if (ch == 'c' && (calls = atoi(optarg)) > 0)
			continue;
		if (ch != 'n' || (rounds = atoi(optarg)) < 1) {
			fprintf(stderr, "usage: jsonbench [-n ROUNDS] "
			    "[-c CALLS] [1k|100k|100k-cjk|100k-x ...]\n");
			return 1;
		}
	}
	bodies = optind < argc ? (const char *const *)argv + optind : all;
	n = optind < argc ? argc - optind : 4;
	printf("%-9s %7s  %12s %12s  %6s  %s\n", "body", "bytes",
	    "scan ns", "strict ns", "ratio", "strict ns/byte");
	for (i = 0; i < n; i++) {
		name = bodies[i];
		size = strncmp(name, "100k", 4) == 0 ? 100000 : 800;
		kind = strchr(name, '-') ? strchr(name, '-') + 1 : "prose";
		seed = 1;
		js = chat_body(size, kind, &len);
		if (calls > 0) {
			for (k = 0; k < calls; k++)
				if (read_scan(js, len, &d) != 0 ||
				    read_strict(js, len) != 0)
					return 1;
			printf("%-9s %7zu  %d calls each\n", name, len, calls);
			free(js);
			continue;
		}
		a = time_reader(0, js, len, &d, rounds);
		b = time_reader(1, js, len, &d, rounds);
		if (a < 0 || b < 0) {
			fprintf(stderr, "jsonbench: %s: a reader refused the "
			    "body\n", name);
			return 1;
		}
		printf("%-9s %7zu  %12.0f %12.0f  %6.2f  %.3f\n", name, len, a,
		    b, b / a, b / (double)len);
		free(js);
	}
	json_doc_free(&d);
	return 0;
}
