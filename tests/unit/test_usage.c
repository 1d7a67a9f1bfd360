/*
 * test_usage.c - token usage read from upstream responses, and its cost.
 *
 * Every request is billed from what these functions find, so the tests
 * feed the shapes each provider really sends (OpenAI chat and embeddings,
 * the Responses API, Anthropic messages), streamed and not, cut at every
 * point a socket read could cut them, and check the row that results:
 * tokens, cached tokens, source and cost in micro-USD.  Bodies past the
 * 1 MiB copy take the tail path; feeding one in a single large piece is
 * done in a child process so that a crash there fails one test, not the
 * run.  Children never call cmocka: they report through their exit code.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "common/json.h"
#include "worker/usage.h"

#define MIB		(1024 * 1024)

/* USD per 1M tokens, as micro-USD per 1M tokens */
static const struct cfg_price mini = { .model = "gpt-4o-mini", .input = 150000, .output = 600000,
    .cached = 75000, .line = 1 };
static const struct cfg_price nocache = { .model = "x", .input = 150000, .output = 600000,
    .cached = -1, .line = 2 };

static struct json_doc	 doc = { .max_tokens = 1 << 20 };

struct want {
	int64_t	 input, output, cache_read, cache_create;
	int	 seen, anthropic;
};

static void
check_acc(const struct usage_acc *a, const struct want *w, const char *what)
{
	if (a->input != w->input || a->output != w->output ||
	    a->cache_read != w->cache_read ||
	    a->cache_create != w->cache_create ||
	    (int)a->seen != w->seen || (int)a->anthropic != w->anthropic)
		fail_msg("%s: got in=%lld out=%lld read=%lld create=%lld "
		    "seen=%d anthropic=%d, want in=%lld out=%lld read=%lld "
		    "create=%lld seen=%d anthropic=%d", what,
		    (long long)a->input, (long long)a->output,
		    (long long)a->cache_read, (long long)a->cache_create,
		    (int)a->seen, (int)a->anthropic, (long long)w->input,
		    (long long)w->output, (long long)w->cache_read,
		    (long long)w->cache_create, w->seen, w->anthropic);
}

/* usage_from_json over an exact-size heap copy of S. */
static struct usage_acc
from_json(const char *s)
{
	struct usage_acc a;
	size_t n = strlen(s);
	char *b = malloc(n ? n : 1);

	assert_non_null(b);
	memcpy(b, s, n);
	memset(&a, 0, sizeof(a));
	usage_from_json(&a, &doc, b, n);
	free(b);
	return a;
}

/*
 * Feed S through a tap in the pieces CUTS delimit (ascending offsets),
 * each piece from its own exact-size heap copy, then end the body.
 */
static struct usage_acc
tap_pieces(const char *s, size_t n, int sse, const size_t *cuts, int ncuts)
{
	struct usage_tap t;
	struct usage_acc a;
	size_t prev = 0;
	int k;

	memset(&t, 0, sizeof(t));
	memset(&a, 0, sizeof(a));
	usage_tap_reset(&t, sse);
	for (k = 0; k <= ncuts; k++) {
		size_t next = k < ncuts ? cuts[k] : n;
		char *b = malloc(next - prev ? next - prev : 1);

		assert_non_null(b);
		memcpy(b, s + prev, next - prev);
		usage_tap_feed_mem(&t, &a, &doc, b, next - prev);
		free(b);
		prev = next;
	}
	usage_tap_end(&t, &a, &doc);
	usage_tap_free(&t);
	return a;
}

static struct usage_acc
tap_whole(const char *s, int sse)
{
	return tap_pieces(s, strlen(s), sse, NULL, 0);
}

/* Every split in two, every piece size, byte by byte, random cuts. */
static void
tap_every_way(const char *s, int sse, const struct want *w)
{
	size_t n = strlen(s), i, step, *cuts;
	struct usage_acc a;
	char what[64];
	int k, round;

	cuts = calloc(n + 1, sizeof(*cuts));
	assert_non_null(cuts);
	a = tap_whole(s, sse);
	check_acc(&a, w, "whole");
	for (i = 0; i <= n; i++) {
		cuts[0] = i;
		a = tap_pieces(s, n, sse, cuts, 1);
		snprintf(what, sizeof(what), "split at %zu", i);
		check_acc(&a, w, what);
	}
	for (step = 1; step <= 64; step++) {
		for (k = 0, i = step; i < n; i += step)
			cuts[k++] = i;
		a = tap_pieces(s, n, sse, cuts, k);
		snprintf(what, sizeof(what), "pieces of %zu", step);
		check_acc(&a, w, what);
	}
	srand(12345);
	for (round = 0; round < 300; round++) {
		for (k = 0, i = 0;;) {
			i += (size_t)(rand() % 40);
			if (i >= n)
				break;
			cuts[k++] = i;
		}
		a = tap_pieces(s, n, sse, cuts, k);
		snprintf(what, sizeof(what), "random round %d", round);
		check_acc(&a, w, what);
	}
	free(cuts);
}

/* ---- usage_from_json: the shapes ---- */

static void
test_openai_chat(void **state)
{
	static const char s[] =
	    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
	    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
	    "\"content\":\"Hi\"},\"finish_reason\":\"stop\"}],"
	    "\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":50,"
	    "\"total_tokens\":1050,\"prompt_tokens_details\":"
	    "{\"cached_tokens\":200,\"audio_tokens\":0},"
	    "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}";
	const struct want w = { 1000, 50, 200, 0, 1, 0 };
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	a = from_json(s);
	check_acc(&a, &w, "chat");
	usage_to_event(&a, &mini, &ev);
	assert_int_equal(ev.usage_source, USAGE_UPSTREAM);
	assert_int_equal(ev.prompt_tokens, 1000);
	assert_int_equal(ev.completion_tokens, 50);
	assert_int_equal(ev.cached_tokens, 200);
	assert_int_equal(ev.cost_micro_usd, 165);
}

/*
 * A member named twice in a usage object: the first is the one read,
 * for the counts, the details objects and the members inside those.
 */
static void
test_usage_duplicate_members_first_wins(void **state)
{
	static const char s[] =
	    "{\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":50,"
	    "\"prompt_tokens\":7,\"prompt_tokens_details\":"
	    "{\"cached_tokens\":200,\"cached_tokens\":9},"
	    "\"completion_tokens\":3,\"prompt_tokens_details\":"
	    "{\"cached_tokens\":8},\"completion_tokens_details\":"
	    "{\"reasoning_tokens\":20},\"completion_tokens_details\":"
	    "{\"reasoning_tokens\":1}}}";
	struct usage_acc a;

	(void)state;
	a = from_json(s);
	assert_true(a.seen);
	assert_int_equal(a.input, 1000);
	assert_int_equal(a.output, 50);
	assert_int_equal(a.cache_read, 200);
	assert_int_equal(a.reasoning, 20);
}

static void
test_openai_chat_without_details(void **state)
{
	const struct want w = { 12, 3, 0, 0, 1, 0 };
	struct usage_acc a;

	(void)state;
	a = from_json("{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,"
	    "\"total_tokens\":15,\"prompt_tokens_details\":null}}");
	check_acc(&a, &w, "details null");
	a = from_json("{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}");
	check_acc(&a, &w, "no details");
}

static void
test_openai_embeddings(void **state)
{
	static const char s[] =
	    "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\","
	    "\"index\":0,\"embedding\":[0.0023,-0.0093,0.0158]}],"
	    "\"model\":\"text-embedding-3-small\","
	    "\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}";
	const struct want w = { 8, 0, 0, 0, 1, 0 };
	const struct cfg_price emb = { .model = "text-embedding-*", .input = 20000, .output = 0,
    .cached = -1, .line = 3 };
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	a = from_json(s);
	check_acc(&a, &w, "embeddings");
	usage_to_event(&a, &emb, &ev);
	assert_int_equal(ev.prompt_tokens, 8);
	assert_int_equal(ev.completion_tokens, 0);
	assert_int_equal(ev.cached_tokens, 0);
	assert_int_equal(ev.cost_micro_usd, 0);	/* 8 * 0.02 = 0.16 */
	a.input = 100000;
	usage_to_event(&a, &emb, &ev);
	assert_int_equal(ev.cost_micro_usd, 2000);
}

static void
test_responses_api(void **state)
{
	static const char s[] =
	    "{\"id\":\"resp_1\",\"object\":\"response\",\"status\":"
	    "\"completed\",\"output\":[{\"type\":\"message\",\"content\":"
	    "[{\"type\":\"output_text\",\"text\":\"hello\"}]}],"
	    "\"usage\":{\"input_tokens\":36,\"input_tokens_details\":"
	    "{\"cached_tokens\":10},\"output_tokens\":87,"
	    "\"output_tokens_details\":{\"reasoning_tokens\":0},"
	    "\"total_tokens\":123},\"user\":null}";
	static const char completed[] =
	    "{\"type\":\"response.completed\",\"sequence_number\":9,"
	    "\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
	    "\"status\":\"completed\",\"usage\":{\"input_tokens\":36,"
	    "\"input_tokens_details\":{\"cached_tokens\":10},"
	    "\"output_tokens\":87,\"total_tokens\":123}}}";
	const struct want w = { 36, 87, 10, 0, 1, 0 };
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	a = from_json(s);
	check_acc(&a, &w, "response");
	a = from_json(completed);
	check_acc(&a, &w, "response.completed");
	usage_to_event(&a, &mini, &ev);
	/* OpenAI's input_tokens already include the cached ones */
	assert_int_equal(ev.prompt_tokens, 36);
	assert_int_equal(ev.cached_tokens, 10);
	assert_int_equal(ev.completion_tokens, 87);
	/* 26*0.15 + 10*0.075 + 87*0.6 = 3.9->4 + 0.75->1 + 52.2->52 */
	assert_int_equal(ev.cost_micro_usd, 57);
}

static void
test_anthropic_message(void **state)
{
	static const char s[] =
	    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\","
	    "\"content\":[{\"type\":\"text\",\"text\":\"Hi\"}],"
	    "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":100,"
	    "\"cache_creation_input_tokens\":20,"
	    "\"cache_read_input_tokens\":300,\"output_tokens\":40}}";
	const struct want w = { 100, 40, 300, 20, 1, 1 };
	const struct cfg_price sonnet = { .model = "claude-*", .input = 3000000,
	    .output = 15000000, .cached = 300000, .cache_write = 3750000,
	    .cache_write_1h = 6000000 };
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	a = from_json(s);
	check_acc(&a, &w, "message");
	usage_to_event(&a, &sonnet, &ev);
	/* prompt = input + cache read + cache creation */
	assert_int_equal(ev.prompt_tokens, 420);
	assert_int_equal(ev.cached_tokens, 300);
	assert_int_equal(ev.completion_tokens, 40);
	/* 100*3 + 300*0.3 + 20*3.75 (5-minute writes) + 40*15 */
	assert_int_equal(ev.cost_micro_usd, 300 + 90 + 75 + 600);
	assert_int_equal(ev.cache_write_5m_tokens, 20);
	assert_int_equal(ev.cache_write_1h_tokens, 0);
}

static void
test_anthropic_stream_events(void **state)
{
	static const char start[] =
	    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
	    "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"
	    "\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,"
	    "\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}";
	static const char delta[] =
	    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
	    "\"end_turn\"},\"usage\":{\"output_tokens\":15}}";
	static const char plain_start[] =
	    "{\"type\":\"message_start\",\"message\":{\"usage\":"
	    "{\"input_tokens\":25,\"output_tokens\":1}}}";
	const struct want w1 = { 25, 1, 1000, 0, 1, 1 };
	const struct want w2 = { 25, 15, 1000, 0, 1, 1 };
	const struct want w3 = { 25, 1, 0, 0, 1, 1 };
	struct usage_acc a;
	struct usage_event ev;
	size_t n;

	(void)state;
	memset(&a, 0, sizeof(a));
	usage_from_json(&a, &doc, start, sizeof(start) - 1);
	check_acc(&a, &w1, "message_start");
	usage_from_json(&a, &doc, delta, sizeof(delta) - 1);
	check_acc(&a, &w2, "message_delta");
	usage_to_event(&a, NULL, &ev);
	assert_int_equal(ev.prompt_tokens, 1025);
	assert_int_equal(ev.completion_tokens, 15);
	assert_int_equal(ev.cached_tokens, 1000);
	assert_int_equal(ev.cost_micro_usd, -1);
	/* without cache fields the event type alone marks Anthropic */
	a = from_json(plain_start);
	check_acc(&a, &w3, "message_start without cache fields");
	n = strlen(delta);
	memset(&a, 0, sizeof(a));
	usage_from_json(&a, &doc, delta, n);
	assert_true(a.anthropic);
}

/*
 * Anthropic's documented usage with both cache lifetimes: writes are
 * billed at 1.25x (5 minutes) and 2x (1 hour) the input price, reads at
 * the cached price; input_tokens leaves all of them out.
 */
static void
test_anthropic_cache_writes_by_lifetime(void **state)
{
	static const char s[] =
	    "{\"id\":\"msg_2\",\"type\":\"message\",\"model\":"
	    "\"claude-sonnet-4-20250514\",\"usage\":{\"input_tokens\":100,"
	    "\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\""
	    ":200,\"cache_creation\":{\"ephemeral_5m_input_tokens\":100,"
	    "\"ephemeral_1h_input_tokens\":200},\"output_tokens\":50,"
	    "\"service_tier\":\"standard\"}}";
	const struct cfg_price sonnet = { .model = "claude-*",
	    .input = 3000000, .output = 15000000, .cached = 300000,
	    .cache_write = 3750000, .cache_write_1h = 6000000 };
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	a = from_json(s);
	usage_to_event(&a, &sonnet, &ev);
	assert_int_equal(ev.prompt_tokens, 600);
	assert_int_equal(ev.cached_tokens, 200);
	assert_int_equal(ev.cache_write_5m_tokens, 100);
	assert_int_equal(ev.cache_write_1h_tokens, 200);
	assert_int_equal(ev.completion_tokens, 50);
	/* 100*3 + 200*0.30 + 100*3.75 + 200*6 + 50*15 */
	assert_int_equal(ev.cost_micro_usd, 300 + 60 + 375 + 1200 + 750);
	assert_string_equal(ev.served_model, "claude-sonnet-4-20250514");
	assert_int_equal(ev.reasoning_tokens, -1);	/* not reported */
}

/* Streamed: message_start carries the model and the cache fields,
 * message_delta repeats them cumulatively with the output. */
static void
test_anthropic_stream_cumulative_usage(void **state)
{
	static const char start[] =
	    "{\"type\":\"message_start\",\"message\":{\"id\":\"m\","
	    "\"model\":\"claude-3-5-haiku-20241022\",\"usage\":{"
	    "\"input_tokens\":10,\"cache_creation_input_tokens\":40,"
	    "\"cache_read_input_tokens\":0,\"cache_creation\":{"
	    "\"ephemeral_5m_input_tokens\":0,\"ephemeral_1h_input_tokens\":40},"
	    "\"output_tokens\":1}}}";
	static const char delta[] =
	    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
	    "\"end_turn\"},\"usage\":{\"input_tokens\":10,"
	    "\"cache_creation_input_tokens\":40,\"cache_read_input_tokens\":0,"
	    "\"output_tokens\":25}}";
	const struct cfg_price haiku = { .model = "claude-3-5-haiku*",
	    .input = 800000, .output = 4000000, .cached = 80000,
	    .cache_write = 1000000, .cache_write_1h = 1600000 };
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	memset(&a, 0, sizeof(a));
	usage_from_json(&a, &doc, start, sizeof(start) - 1);
	usage_from_json(&a, &doc, delta, sizeof(delta) - 1);
	usage_to_event(&a, &haiku, &ev);
	assert_int_equal(ev.prompt_tokens, 50);
	assert_int_equal(ev.cache_write_5m_tokens, 0);
	assert_int_equal(ev.cache_write_1h_tokens, 40);
	assert_int_equal(ev.completion_tokens, 25);
	/* 10*0.80 + 40*1.60 + 25*4 = 8 + 64 + 100 */
	assert_int_equal(ev.cost_micro_usd, 172);
	assert_string_equal(ev.served_model, "claude-3-5-haiku-20241022");
}

/* OpenAI reasoning models: reasoning tokens are part of the completion,
 * billed as output, and recorded apart; the answer names its snapshot. */
static void
test_openai_reasoning_and_served_model(void **state)
{
	static const char chat[] =
	    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
	    "\"model\":\"o3-mini-2025-01-31\",\"choices\":[],\"usage\":{"
	    "\"prompt_tokens\":1000,\"completion_tokens\":500,"
	    "\"total_tokens\":1500,\"prompt_tokens_details\":{"
	    "\"cached_tokens\":400,\"audio_tokens\":0},"
	    "\"completion_tokens_details\":{\"reasoning_tokens\":320,"
	    "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
	    "\"rejected_prediction_tokens\":0}}}";
	static const char resp[] =
	    "{\"type\":\"response.completed\",\"response\":{\"id\":\"r\","
	    "\"object\":\"response\",\"model\":\"o3-2025-04-16\","
	    "\"usage\":{\"input_tokens\":200,\"input_tokens_details\":{"
	    "\"cached_tokens\":0},\"output_tokens\":900,"
	    "\"output_tokens_details\":{\"reasoning_tokens\":640},"
	    "\"total_tokens\":1100}}}";
	const struct cfg_price o3mini = { .model = "o3-mini*",
	    .input = 1100000, .output = 4400000, .cached = 550000 };
	const struct cfg_price o3 = { .model = "o3*", .input = 2000000,
	    .output = 8000000, .cached = 500000 };
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	a = from_json(chat);
	usage_to_event(&a, &o3mini, &ev);
	assert_int_equal(ev.reasoning_tokens, 320);
	assert_int_equal(ev.completion_tokens, 500);
	/* 600*1.10 + 400*0.55 + 500*4.40 = 660 + 220 + 2200 */
	assert_int_equal(ev.cost_micro_usd, 3080);
	assert_string_equal(ev.served_model, "o3-mini-2025-01-31");
	memset(&a, 0, sizeof(a));
	usage_from_json(&a, &doc, resp, sizeof(resp) - 1);
	usage_to_event(&a, &o3, &ev);
	assert_int_equal(ev.reasoning_tokens, 640);
	/* 200*2 + 900*8 */
	assert_int_equal(ev.cost_micro_usd, 7600);
	assert_string_equal(ev.served_model, "o3-2025-04-16");
	assert_int_equal(ev.cache_write_5m_tokens, 0);
}

static void
test_nested_usage_not_taken(void **state)
{
	/* a "usage" key deeper than the known places is someone's data */
	static const char s[] =
	    "{\"choices\":[{\"message\":{\"content\":\"x\","
	    "\"usage\":{\"prompt_tokens\":999,\"completion_tokens\":999}}}],"
	    "\"data\":{\"usage\":{\"prompt_tokens\":888}},"
	    "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2}}";
	const struct want w = { 10, 2, 0, 0, 1, 0 };
	const struct want none = { 0, 0, 0, 0, 0, 0 };
	struct usage_acc a;

	(void)state;
	a = from_json(s);
	check_acc(&a, &w, "nested");
	a = from_json("{\"choices\":[{\"usage\":{\"prompt_tokens\":999}}]}");
	check_acc(&a, &none, "only nested");
}

static void
test_no_usage(void **state)
{
	const struct want none = { 0, 0, 0, 0, 0, 0 };
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	a = from_json("{\"usage\":null}");
	check_acc(&a, &none, "null");
	a = from_json("{\"usage\":{}}");
	check_acc(&a, &none, "empty");
	a = from_json("{\"usage\":{\"total_tokens\":5}}");
	check_acc(&a, &none, "total only");
	a = from_json("{\"usage\":{\"prompt_tokens\":\"12\"}}");
	check_acc(&a, &none, "string count");
	a = from_json("{\"usage\":{\"prompt_tokens\":1.5}}");
	check_acc(&a, &none, "float count");
	a = from_json("{\"error\":{\"message\":\"bad\"}}");
	check_acc(&a, &none, "error body");
	a = from_json("[{\"usage\":{\"prompt_tokens\":1}}]");
	check_acc(&a, &none, "array");
	a = from_json("{\"usage\":{\"prompt_tokens\":1}");
	check_acc(&a, &none, "truncated");
	a = from_json("not json at all \"usage\"");
	check_acc(&a, &none, "not json");
	/* the row: unknown everywhere, even with a price */
	usage_to_event(&a, &mini, &ev);
	assert_int_equal(ev.usage_source, USAGE_NONE);
	assert_int_equal(ev.prompt_tokens, -1);
	assert_int_equal(ev.completion_tokens, -1);
	assert_int_equal(ev.cached_tokens, -1);
	assert_int_equal(ev.cost_micro_usd, -1);
	usage_to_event(&a, NULL, &ev);
	assert_int_equal(ev.usage_source, USAGE_NONE);
	assert_int_equal(ev.cost_micro_usd, -1);
}

/*
 * A negative count is not a count: take() ignores a negative prompt or
 * completion count, but cached_tokens, cache_read_input_tokens and
 * cache_creation_input_tokens are taken as they come (usage.c
 * merge_usage, the three json_int calls without a v >= 0 check), so a
 * row can show -5 cached tokens and a cost computed from it.
 */
static void
test_negative_counts_ignored(void **state)
{
	struct usage_acc a;

	(void)state;
	a = from_json("{\"usage\":{\"prompt_tokens\":-3,"
	    "\"completion_tokens\":-4}}");
	assert_false(a.seen);
	a = from_json("{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":1,"
	    "\"prompt_tokens_details\":{\"cached_tokens\":-5}}}");
	assert_int_equal(a.cache_read, 0);
	a = from_json("{\"usage\":{\"input_tokens\":10,\"output_tokens\":1,"
	    "\"cache_read_input_tokens\":-5,"
	    "\"cache_creation_input_tokens\":-6}}");
	assert_int_equal(a.cache_read, 0);
	assert_int_equal(a.cache_create, 0);
}

/* ---- usage_tap: SSE ---- */

static const char openai_sse[] =
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
    "\"assistant\",\"content\":\"\"}}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
    "\"the \\\"usage\\\" word\"}}],\"usage\":null}\n"
    "\n"
    ": keep-alive comment \"usage\"\n"
    "\n"
    "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"stop\"}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":1000,"
    "\"completion_tokens\":50,\"total_tokens\":1050,"
    "\"prompt_tokens_details\":{\"cached_tokens\":200}}}\n"
    "\n"
    "data: {\"id\":\"c1\",\"choices\":[],\"usage\":null}\n"
    "\n"
    "data: [DONE]\n"
    "\n";

static const char anthropic_sse[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
    "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"
    "\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":7,"
    "\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

static const char responses_sse[] =
    "event: response.created\n"
    "data: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\","
    "\"status\":\"in_progress\",\"usage\":null}}\n"
    "\n"
    "event: response.output_text.delta\n"
    "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n"
    "\n"
    "event: response.completed\n"
    "data: {\"type\":\"response.completed\",\"response\":{\"id\":"
    "\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":36,"
    "\"input_tokens_details\":{\"cached_tokens\":10},"
    "\"output_tokens\":87,\"total_tokens\":123}}}\n"
    "\n";

/* S with every "\n" turned into "\r\n".  Caller frees. */
static char *
crlf(const char *s)
{
	char *o = malloc(strlen(s) * 2 + 1), *p = o;

	assert_non_null(o);
	for (; *s; s++) {
		if (*s == '\n')
			*p++ = '\r';
		*p++ = *s;
	}
	*p = '\0';
	return o;
}

static void
test_sse_openai_splits(void **state)
{
	const struct want w = { 1000, 50, 200, 0, 1, 0 };
	char *c;

	(void)state;
	tap_every_way(openai_sse, 1, &w);
	c = crlf(openai_sse);
	tap_every_way(c, 1, &w);
	free(c);
}

static void
test_sse_anthropic_splits(void **state)
{
	const struct want w = { 25, 15, 1000, 7, 1, 1 };
	struct usage_acc a;
	struct usage_event ev;
	char *c;

	(void)state;
	tap_every_way(anthropic_sse, 1, &w);
	c = crlf(anthropic_sse);
	tap_every_way(c, 1, &w);
	free(c);
	a = tap_whole(anthropic_sse, 1);
	usage_to_event(&a, NULL, &ev);
	assert_int_equal(ev.prompt_tokens, 1032);
	assert_int_equal(ev.cached_tokens, 1000);
	assert_int_equal(ev.completion_tokens, 15);
}

static void
test_sse_responses_splits(void **state)
{
	const struct want w = { 36, 87, 10, 0, 1, 0 };
	char *c;

	(void)state;
	tap_every_way(responses_sse, 1, &w);
	c = crlf(responses_sse);
	tap_every_way(c, 1, &w);
	free(c);
}

static void
test_sse_last_line_without_newline(void **state)
{
	static const char s[] =
	    "data: {\"choices\":[],\"usage\":null}\n\n"
	    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,"
	    "\"completion_tokens\":3}}";
	static const char r[] =
	    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,"
	    "\"completion_tokens\":3}}\r";
	const struct want w = { 7, 3, 0, 0, 1, 0 };

	(void)state;
	tap_every_way(s, 1, &w);
	tap_every_way(r, 1, &w);
}

static void
test_sse_null_usage_only(void **state)
{
	const struct want none = { 0, 0, 0, 0, 0, 0 };
	struct usage_acc a;

	(void)state;
	a = tap_whole("data: {\"choices\":[],\"usage\":null}\n\n"
	    "data: {\"choices\":[],\"usage\":null}\n\ndata: [DONE]\n\n", 1);
	check_acc(&a, &none, "null only");
	/* "usage" outside a data line, or a data line that is not JSON */
	a = tap_whole("event: usage\n"
	    "id: {\"usage\":{\"prompt_tokens\":5}}\n"
	    "data: \"usage\" {\"prompt_tokens\":5}\n"
	    "Data: {\"usage\":{\"prompt_tokens\":5}}\n\n", 1);
	check_acc(&a, &none, "not data");
}

static void
test_sse_data_without_space(void **state)
{
	const struct want w = { 4, 2, 0, 0, 1, 0 };
	struct usage_acc a;

	(void)state;
	a = tap_whole("data:{\"usage\":{\"prompt_tokens\":4,"
	    "\"completion_tokens\":2}}\n\n", 1);
	check_acc(&a, &w, "data:");
}

static void
test_sse_overlong_line_skipped(void **state)
{
	const struct want w = { 9, 1, 0, 0, 1, 0 };
	size_t big = (size_t)MIB + MIB / 2, n, i;
	struct usage_tap t;
	struct usage_acc a;
	char *s;

	(void)state;
	s = malloc(big + 256);
	assert_non_null(s);
	n = (size_t)sprintf(s, "data: {\"usage\":{\"prompt_tokens\":1},\"x\":\"");
	memset(s + n, 'a', big);
	n += big;
	n += (size_t)sprintf(s + n, "\"}\n\ndata: {\"usage\":{\"prompt_tokens\":9,"
	    "\"completion_tokens\":1}}\n\n");
	memset(&t, 0, sizeof(t));
	memset(&a, 0, sizeof(a));
	usage_tap_reset(&t, 1);
	for (i = 0; i < n; i += 4096)
		usage_tap_feed_mem(&t, &a, &doc, s + i,
		    n - i < 4096 ? n - i : 4096);
	usage_tap_end(&t, &a, &doc);
	check_acc(&a, &w, "after an overlong line");
	assert_true(t.cap <= (size_t)MIB);
	usage_tap_free(&t);
	free(s);
}

/*
 * Responses' response.completed echoes the request's instructions before
 * its usage: a 1.1 MB instruction makes the event line longer than the
 * line bound, and the usage must still be found in the line's tail.
 */
static void
test_sse_overlong_responses_line_keeps_usage(void **state)
{
	const struct want w = { 12, 34, 5, 0, 1, 0 };
	size_t big = (size_t)MIB + MIB / 10, n, i;
	struct usage_tap t;
	struct usage_acc a;
	char *s;

	(void)state;
	s = malloc(big + 512);
	assert_non_null(s);
	n = (size_t)sprintf(s, "event: response.completed\r\ndata: "
	    "{\"type\":\"response.completed\",\"response\":{\"id\":\"r\","
	    "\"instructions\":\"");
	memset(s + n, 'i', big);
	n += big;
	n += (size_t)sprintf(s + n, "\\\"usage\\\":{}\",\"usage\":{"
	    "\"input_tokens\":12,\"input_tokens_details\":{\"cached_tokens\""
	    ":5},\"output_tokens\":34},\"user\":null}}\r\n\r\n");
	memset(&t, 0, sizeof(t));
	memset(&a, 0, sizeof(a));
	usage_tap_reset(&t, 1);
	for (i = 0; i < n; i += 3000)
		usage_tap_feed_mem(&t, &a, &doc, s + i,
		    n - i < 3000 ? n - i : 3000);
	usage_tap_end(&t, &a, &doc);
	check_acc(&a, &w, "usage at the end of an overlong line");
	assert_true(t.cap <= (size_t)MIB);
	usage_tap_free(&t);
	free(s);
}

/* A stream that never reports usage: estimated from the text relayed. */
static void
test_sse_text_counted_beside_usage_null(void **state)
{
	/* include_usage puts "usage":null on every chunk: a stream cut
	 * before its usage chunk still counts the text it relayed */
	const char *s =
	    "data: {\"choices\":[{\"delta\":{\"content\":\"Hello \"}}],"
	    "\"usage\":null}\n\n"
	    "data: {\"choices\":[{\"delta\":{\"content\":\"from \"}}],"
	    "\"usage\":null}\n\n";
	struct usage_acc a = tap_whole(s, 1);

	(void)state;
	assert_int_equal(a.seen, 0);
	assert_int_equal(a.text_bytes, 11);
}

static void
test_sse_without_usage_is_estimated(void **state)
{
	/* 9 + 11 + 7 bytes of text (escapes as they stand): 27 -> 7 tokens */
	const char *s =
	    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\","
	    "\"content\":\"Hello the\"}}]}\r\n\r\n"
	    ": ping\r\n\r\n"
	    "data: {\"choices\":[{\"delta\":{\"content\": \"re, \\\"you\\\"\"}}]}\n\n"
	    "event: content_block_delta\ndata: {\"delta\":{\"type\":"
	    "\"text_delta\",\"text\":\"abcdefg\"}}\n\n"
	    "data: [DONE]\n\n";
	const struct want w = { 25, 7, 0, 0, 1, 0 };
	struct usage_event ev;
	struct cfg_price price = { .input = 1000000, .output = 2000000,
	    .cached = -1 };
	struct usage_acc a = tap_whole(s, 1);

	assert_int_equal(a.seen, 0);
	assert_int_equal(a.text_bytes, 27);
	usage_estimate(&a, 100);	/* a 100-byte body: 25 tokens */
	check_acc(&a, &w, "estimated");
	memset(&ev, 0, sizeof(ev));
	usage_to_event(&a, &price, &ev);
	assert_int_equal(ev.usage_source, USAGE_ESTIMATED);
	assert_int_equal(ev.prompt_tokens, 25);
	assert_int_equal(ev.completion_tokens, 7);
	assert_int_equal(ev.cost_micro_usd, 25 + 14);
}

static void
test_tap_feed_evbuffer(void **state)
{
	const struct want w = { 1000, 50, 200, 0, 1, 0 };
	const size_t n = sizeof(openai_sse) - 1;
	struct evbuffer *eb;
	struct usage_tap t;
	struct usage_acc a;
	size_t i, half;

	(void)state;
	/* many small chains, so the feed walks several iovecs per call */
	eb = evbuffer_new();
	assert_non_null(eb);
	for (i = 0; i < n; i += 7)
		evbuffer_add_reference(eb, openai_sse + i,
		    n - i < 7 ? n - i : 7, NULL, NULL);
	memset(&t, 0, sizeof(t));
	memset(&a, 0, sizeof(a));
	usage_tap_reset(&t, 1);
	/* only the first LEN bytes, then the rest */
	half = n / 2 + 3;
	usage_tap_feed(&t, &a, &doc, eb, (long)half);
	assert_int_equal(evbuffer_get_length(eb), n);	/* not consumed */
	evbuffer_drain(eb, half);
	usage_tap_feed(&t, &a, &doc, eb, -1);
	usage_tap_end(&t, &a, &doc);
	check_acc(&a, &w, "evbuffer");
	evbuffer_free(eb);

	/* JSON mode through an evbuffer too */
	eb = evbuffer_new();
	assert_non_null(eb);
	evbuffer_add_printf(eb, "{\"usage\":{\"prompt_tokens\":3,");
	evbuffer_add_printf(eb, "\"completion_tokens\":4}}");
	memset(&a, 0, sizeof(a));
	usage_tap_reset(&t, 0);
	usage_tap_feed(&t, &a, &doc, eb, -1);
	usage_tap_end(&t, &a, &doc);
	assert_int_equal(a.input, 3);
	assert_int_equal(a.output, 4);
	evbuffer_free(eb);
	usage_tap_free(&t);
}

static void
test_tap_reused_between_modes(void **state)
{
	const struct want w = { 1000, 50, 200, 0, 1, 0 };
	const struct want wj = { 10, 2, 0, 0, 1, 0 };
	static const char j[] =
	    "{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2}}";
	struct usage_tap t;
	struct usage_acc a;

	(void)state;
	memset(&t, 0, sizeof(t));
	/* an SSE stream cut mid-line, then the tap reused for JSON */
	memset(&a, 0, sizeof(a));
	usage_tap_reset(&t, 1);
	usage_tap_feed_mem(&t, &a, &doc, openai_sse, sizeof(openai_sse) - 1);
	usage_tap_end(&t, &a, &doc);
	check_acc(&a, &w, "sse");
	usage_tap_feed_mem(&t, &a, &doc, "data: {\"usa", 12);
	memset(&a, 0, sizeof(a));
	usage_tap_reset(&t, 0);
	usage_tap_feed_mem(&t, &a, &doc, j, sizeof(j) - 1);
	usage_tap_end(&t, &a, &doc);
	check_acc(&a, &wj, "json after sse");
	usage_tap_free(&t);
}

/* ---- usage_tap: JSON bodies ---- */

static void
test_json_body_split(void **state)
{
	static const char s[] =
	    "{\"id\":\"chatcmpl-1\",\"choices\":[{\"message\":{\"content\":"
	    "\"Hi\"}}],\"usage\":{\"prompt_tokens\":1000,"
	    "\"completion_tokens\":50,\"prompt_tokens_details\":"
	    "{\"cached_tokens\":200}}}";
	const struct want w = { 1000, 50, 200, 0, 1, 0 };

	(void)state;
	tap_every_way(s, 0, &w);
}

static void
test_json_body_usage_inside_string(void **state)
{
	/* the text "usage" in content, escaped and not, before the key */
	static const char s[] =
	    "{\"choices\":[{\"message\":{\"content\":"
	    "\"set \\\"usage\\\": {\\\"prompt_tokens\\\": 999} and usage\","
	    "\"tool_calls\":[{\"function\":{\"name\":\"usage\",\"arguments\":"
	    "\"{\\\"usage\\\":{\\\"prompt_tokens\\\":777}}\"}}]}}],"
	    "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2}}";
	/* and after it */
	static const char t[] =
	    "{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2},"
	    "\"note\":\"\\\"usage\\\":{\\\"prompt_tokens\\\":5}\","
	    "\"tags\":[\"usage\"]}";
	const struct want w = { 10, 2, 0, 0, 1, 0 };
	struct usage_acc a;

	(void)state;
	a = tap_whole(s, 0);
	check_acc(&a, &w, "before");
	a = tap_whole(t, 0);
	check_acc(&a, &w, "after");
}

/*
 * An embeddings-like body of about TOTAL bytes with the usage object at
 * the end, as OpenAI sends it.  Caller frees; *N is its length.
 */
static char *
big_body(size_t total, const char *tail, size_t *n)
{
	char *s = malloc(total + 512);
	size_t k;
	int i = 0;

	assert_non_null(s);
	k = (size_t)sprintf(s, "{\"object\":\"list\",\"data\":[{\"object\":"
	    "\"embedding\",\"index\":0,\"embedding\":[");
	while (k < total) {
		k += (size_t)sprintf(s + k, "%s-0.0%06d", i ? "," : "",
		    i * 7919 % 1000000);
		i++;
	}
	k += (size_t)sprintf(s + k, "]}],\"model\":\"text-embedding-3-large\","
	    "%s}", tail);
	*n = k;
	return s;
}

static const char big_tail[] =
    "\"usage\":{\"prompt_tokens\":8191,\"total_tokens\":8191}";

static void
test_json_body_over_1mib_tail(void **state)
{
	const struct want w = { 8191, 0, 0, 0, 1, 0 };
	static const size_t steps[] = { 1000, 4096, 16384, 65535, 65536,
	    100000 };
	size_t n, i, k, *cuts;
	struct usage_acc a;
	char what[64], *s;

	(void)state;
	s = big_body((size_t)MIB * 2 + 12345, big_tail, &n);
	assert_true(n > (size_t)MIB);
	cuts = calloc(n / 1000 + 2, sizeof(*cuts));
	assert_non_null(cuts);
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		size_t off;

		for (k = 0, off = steps[i]; off < n; off += steps[i])
			cuts[k++] = off;
		a = tap_pieces(s, n, 0, cuts, (int)k);
		snprintf(what, sizeof(what), "pieces of %zu", steps[i]);
		check_acc(&a, &w, what);
	}
	/* the usage object itself cut across the last two pieces */
	for (k = 0, i = (n - 20) % 4096 ? (n - 20) % 4096 : 4096; i <= n - 20;
	    i += 4096)
		cuts[k++] = i;
	assert_int_equal(cuts[k - 1], n - 20);
	a = tap_pieces(s, n, 0, cuts, (int)k);
	check_acc(&a, &w, "usage cut across the last two pieces");
	free(cuts);
	free(s);
}

static void
test_json_body_at_the_limit(void **state)
{
	const struct want w = { 8191, 0, 0, 0, 1, 0 };
	size_t n, m, k, cuts[1100];
	struct usage_acc a;
	char *s;

	(void)state;
	/* exactly 1 MiB stays on the whole-body path; one byte more not */
	s = big_body((size_t)MIB - 200, big_tail, &n);
	assert_true(n <= (size_t)MIB);
	m = (size_t)MIB - n;
	memmove(s + 1 + m, s + 1, n - 1);	/* pad after the '{' */
	memset(s + 1, ' ', m);
	n = (size_t)MIB;
	for (k = 0; k * 1024 < n; k++)
		cuts[k] = (k + 1) * 1024 < n ? (k + 1) * 1024 : n;
	a = tap_pieces(s, n, 0, cuts, (int)k);
	check_acc(&a, &w, "1 MiB");
	free(s);
	s = big_body((size_t)MIB - 200, big_tail, &n);
	m = (size_t)MIB + 1 - n;
	s = realloc(s, (size_t)MIB + 1);
	assert_non_null(s);
	memmove(s + 1 + m, s + 1, n - 1);
	memset(s + 1, ' ', m);
	n = (size_t)MIB + 1;
	for (k = 0; k * 1024 < n; k++)
		cuts[k] = (k + 1) * 1024 < n ? (k + 1) * 1024 : n;
	a = tap_pieces(s, n, 0, cuts, (int)k);
	check_acc(&a, &w, "1 MiB + 1");
	free(s);
}

static void
test_json_tail_usage_inside_string(void **state)
{
	/* escaped "usage" text after the real object does not match */
	const struct want w = { 8191, 0, 0, 0, 1, 0 };
	static const char tail[] =
	    "\"usage\":{\"prompt_tokens\":8191,\"total_tokens\":8191},"
	    "\"note\":\"\\\"usage\\\": {\\\"prompt_tokens\\\": 1}\"";
	size_t n, k, off, *cuts;
	struct usage_acc a;
	char *s;

	(void)state;
	s = big_body((size_t)MIB * 3 / 2, tail, &n);
	cuts = calloc(n / 4096 + 2, sizeof(*cuts));
	assert_non_null(cuts);
	for (k = 0, off = 4096; off < n; off += 4096)
		cuts[k++] = off;
	a = tap_pieces(s, n, 0, cuts, (int)k);
	check_acc(&a, &w, "escaped after");
	free(cuts);
	free(s);
}

/*
 * On the tail path usage_from_tail() takes the last "usage" string in the
 * tail and gives up if no '{' follows it, so a later string VALUE
 * "usage" (metadata, a tag) hides the real object.
 */
static void
test_json_tail_usage_as_later_value(void **state)
{
	const struct want w = { 8191, 0, 0, 0, 1, 0 };
	static const char tail[] =
	    "\"usage\":{\"prompt_tokens\":8191,\"total_tokens\":8191},"
	    "\"metadata\":{\"purpose\":\"usage\"}";
	size_t n, k, off, *cuts;
	struct usage_acc a;
	char *s;

	(void)state;
	s = big_body((size_t)MIB * 3 / 2, tail, &n);
	cuts = calloc(n / 4096 + 2, sizeof(*cuts));
	assert_non_null(cuts);
	for (k = 0, off = 4096; off < n; off += 4096)
		cuts[k++] = off;
	a = tap_pieces(s, n, 0, cuts, (int)k);
	free(cuts);
	free(s);
	check_acc(&a, &w, "value \"usage\" after the object");
}

/*
 * A body over 1 MiB arriving in one large piece.  tap_append() refuses
 * it without growing the buffer, and the truncation path then copies
 * USAGE_TAIL (64 KiB) bytes into t->buf whatever its capacity
 * (usage.c, the memcpy in usage_tap_feed_mem's "n >= USAGE_TAIL" branch):
 * NULL on a fresh tap, a 4 KiB buffer after one small first piece.
 * Run in a child; exit 0 = usage found and the buffer invariant held.
 */
static int
child_one_big_piece(size_t first)
{
	const struct want w = { 8191, 0, 0, 0, 1, 0 };
	struct usage_tap t;
	struct usage_acc a;
	size_t n;
	char *s;

	s = big_body((size_t)MIB * 2, big_tail, &n);
	memset(&t, 0, sizeof(t));
	memset(&a, 0, sizeof(a));
	usage_tap_reset(&t, 0);
	if (first > 0)
		usage_tap_feed_mem(&t, &a, &doc, s, first);
	usage_tap_feed_mem(&t, &a, &doc, s + first, n - first);
	if (t.len > t.cap)
		return 3;		/* wrote past the buffer */
	usage_tap_end(&t, &a, &doc);
	if (a.input != w.input || !a.seen)
		return 4;
	usage_tap_free(&t);
	free(s);
	return 0;
}

static void
run_child(size_t first)
{
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* cmocka's handlers would resume the suite in the child */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		signal(SIGILL, SIG_DFL);
		signal(SIGFPE, SIG_DFL);
		signal(SIGABRT, SIG_DFL);
		alarm(30);
		_exit(child_one_big_piece(first));
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		fail_msg("first piece %zu: child killed by signal %d", first,
		    WTERMSIG(st));
	if (WEXITSTATUS(st) == 3)
		fail_msg("first piece %zu: t.len > t.cap after the feed "
		    "(heap overflow)", first);
	if (WEXITSTATUS(st) != 0)
		fail_msg("first piece %zu: child exit %d", first,
		    WEXITSTATUS(st));
}

static void
test_json_body_over_1mib_one_piece(void **state)
{
	(void)state;
	run_child(0);
}

static void
test_json_body_over_1mib_small_then_big(void **state)
{
	(void)state;
	run_child(100);
}

/* ---- cost ---- */

static void
test_cost_rounding(void **state)
{
	(void)state;
	/* 800*0.15 + 200*0.075 + 50*0.60 = 120 + 15 + 30 */
	assert_int_equal(usage_cost(&mini, 1000, 200, 0, 0, 50), 165);
	/* cached price -1: cached billed as input: 1000*0.15 + 50*0.6 */
	assert_int_equal(usage_cost(&nocache, 1000, 200, 0, 0, 50), 180);
	assert_int_equal(usage_cost(&mini, 0, 0, 0, 0, 0), 0);
	/* half a micro-dollar rounds up, less rounds down */
	{
		const struct cfg_price half = { .model = "h", .input = 500000, .output = 499999,
    .cached = -1, .line = 5 };

		assert_int_equal(usage_cost(&half, 1, 0, 0, 0, 0), 1);
		assert_int_equal(usage_cost(&half, 0, 0, 0, 0, 1), 0);
		assert_int_equal(usage_cost(&half, 3, 0, 0, 0, 3), 3);
	}
	/* 2 * 0.15 = 0.3 -> 0; 4 * 0.15 = 0.6 -> 1 */
	assert_int_equal(usage_cost(&mini, 2, 0, 0, 0, 0), 0);
	assert_int_equal(usage_cost(&mini, 4, 0, 0, 0, 0), 1);
	/* cached above input is capped at input */
	assert_int_equal(usage_cost(&mini, 100, 150, 0, 0, 0),
	    usage_cost(&mini, 100, 100, 0, 0, 0));
	assert_int_equal(usage_cost(&mini, 100, 100, 0, 0, 0), 8);	/* 7.5 */
	/* large counts do not overflow: 10^9 tokens at $60/M = $60000 */
	{
		const struct cfg_price big = { .model = "b", .input = 60000000, .output = 60000000,
    .cached = -1, .line = 6 };

		assert_int_equal(usage_cost(&big, 1000000000, 0, 0, 0, 1000000000),
		    120000000000LL);
	}
}

static void
test_event_without_price(void **state)
{
	struct usage_acc a;
	struct usage_event ev;

	(void)state;
	a = from_json("{\"usage\":{\"prompt_tokens\":1000,"
	    "\"completion_tokens\":50,\"prompt_tokens_details\":"
	    "{\"cached_tokens\":200}}}");
	memset(&ev, 0x55, sizeof(ev));
	usage_to_event(&a, NULL, &ev);
	assert_int_equal(ev.usage_source, USAGE_UPSTREAM);
	assert_int_equal(ev.prompt_tokens, 1000);
	assert_int_equal(ev.completion_tokens, 50);
	assert_int_equal(ev.cached_tokens, 200);
	assert_int_equal(ev.cost_micro_usd, -1);
	usage_to_event(&a, &nocache, &ev);
	assert_int_equal(ev.cost_micro_usd, 180);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openai_chat),
		cmocka_unit_test(test_openai_chat_without_details),
		cmocka_unit_test(test_usage_duplicate_members_first_wins),
		cmocka_unit_test(test_openai_embeddings),
		cmocka_unit_test(test_responses_api),
		cmocka_unit_test(test_anthropic_message),
		cmocka_unit_test(test_anthropic_stream_events),
		cmocka_unit_test(test_anthropic_cache_writes_by_lifetime),
		cmocka_unit_test(test_anthropic_stream_cumulative_usage),
		cmocka_unit_test(test_openai_reasoning_and_served_model),
		cmocka_unit_test(test_nested_usage_not_taken),
		cmocka_unit_test(test_no_usage),
		cmocka_unit_test(test_negative_counts_ignored),
		cmocka_unit_test(test_sse_openai_splits),
		cmocka_unit_test(test_sse_anthropic_splits),
		cmocka_unit_test(test_sse_responses_splits),
		cmocka_unit_test(test_sse_last_line_without_newline),
		cmocka_unit_test(test_sse_null_usage_only),
		cmocka_unit_test(test_sse_data_without_space),
		cmocka_unit_test(test_sse_overlong_line_skipped),
		cmocka_unit_test(test_sse_overlong_responses_line_keeps_usage),
		cmocka_unit_test(test_sse_without_usage_is_estimated),
		cmocka_unit_test(test_sse_text_counted_beside_usage_null),
		cmocka_unit_test(test_tap_feed_evbuffer),
		cmocka_unit_test(test_tap_reused_between_modes),
		cmocka_unit_test(test_json_body_split),
		cmocka_unit_test(test_json_body_usage_inside_string),
		cmocka_unit_test(test_json_body_over_1mib_tail),
		cmocka_unit_test(test_json_body_at_the_limit),
		cmocka_unit_test(test_json_tail_usage_inside_string),
		cmocka_unit_test(test_json_tail_usage_as_later_value),
		cmocka_unit_test(test_json_body_over_1mib_one_piece),
		cmocka_unit_test(test_json_body_over_1mib_small_then_big),
		cmocka_unit_test(test_cost_rounding),
		cmocka_unit_test(test_event_without_price),
	};
	int rc;

	rc = cmocka_run_group_tests(tests, NULL, NULL);
	json_doc_free(&doc);
	return rc;
}
