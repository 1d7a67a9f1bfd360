/*
 * mockllm - a fake OpenAI / Anthropic upstream for tests and benchmarks.
 *
 * Why it looks like this: it is the benchmark baseline, so it must cost
 * as little as possible per request (one event loop, evhttp, no threads,
 * no JSON library: the request body is scanned once for the three keys we
 * need), and it is what the integration tests compare token counts
 * against, so every number it reports is deterministic and can be forced
 * per request by a header.  One mock therefore serves a whole test run.
 *
 * Token numbers (usage objects, every endpoint):
 *	P (prompt)	x-mock-prompt-tokens, else request body length / 4,
 *			at least 1
 *	C (completion)	x-mock-completion-tokens, else the number of
 *			content chunks for a streamed answer, else 10
 *	K (cached)	x-mock-cached-tokens, else 0
 *
 * Answer text: chunk i is words[i % NWORDS] followed by a space; a
 * non-streamed answer carries the text of all N chunks, so the text does
 * not depend on "stream".
 *
 * Failures: --fail-status or x-mock-status (a header below 400 cancels
 * --fail-status for that request) answer with a JSON error, never SSE,
 * after latency-ms: OpenAI's {"error":{message,type,param,code}} shape,
 * Anthropic's {"type":"error","error":{type,message}} on /v1/messages.
 *
 * Streams: each SSE event goes out as its own HTTP chunk.  The head is
 * sent at once; the first event follows after latency-ms and each later
 * event chunk-delay-ms after the one before (event timers, never sleep).
 * Chat and completions put finish_reason "stop" on the last content chunk
 * (no extra empty chunk), so a stream is exactly N content events, the
 * usage chunk when stream_options.include_usage is true, and [DONE].
 * x-mock-drop-after-chunks N sends every event up to and including the
 * Nth content event, waits until the bytes have left the socket buffer,
 * then closes the connection without the terminating chunk (streams
 * only; prologue events such as message_start are always sent).
 * x-mock-hang 1 never answers; the connection is watched so that a
 * client giving up is still seen and counted as closed.
 * x-mock-gzip 1 with an Accept-Encoding naming gzip gzips a whole JSON
 * answer (Content-Encoding: gzip), as a provider's edge would.
 *
 * --created T puts T (seconds since the epoch) in every answer's
 * "created" instead of the time it was made, so that the same request
 * gets the same bytes in every run: make perf-guard counts the
 * instructions spent decoding a gzipped answer, and those depend on
 * its bytes.
 * Tool calls: a chat or messages request with "tools" whose last
 * message is not a tool result (OpenAI's role "tool", Anthropic's
 * tool_result block) is answered with a call of the first tool, input
 * {"city":"Paris"}, id call_mockN / toolu_mockN, finish_reason
 * tool_calls / stop_reason tool_use; streamed, its arguments come in
 * TOOL_PIECES pieces (the content chunks: C is TOOL_PIECES unless
 * forced), as each provider streams them.  The request that carries the
 * tool's result gets the ordinary text answer, so a client's round trip
 * is two requests.
 *
 * Azure OpenAI paths (/openai/deployments/NAME/chat/completions,
 * /completions, /embeddings) answer as the OpenAI endpoint they map to.
 *
 * Connections: /stats "connections" counts accepts (evhttp bevcb);
 * "active_connections" counts open connections that have sent at least
 * one request (the close callback can only be set from a request);
 * "requests" counts every request except GET /stats and GET /last.
 * --close-after N and x-mock-close count all requests on a connection.
 *
 * GET /last describes the last request that was not /stats or /last:
 * method, path (the request URI, query included), headers with lowercased
 * names, body length and the body as a JSON string.
 */

#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <zlib.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define DEFAULT_CHUNKS		20
#define DEFAULT_COMPLETION	10
#define MODEL_MAX		256
#define DEFAULT_MODEL		"mock-model"
#define CONN_BUCKETS		4096
#define DRAIN_POLL_MS		1
#define HTTP_TIMEOUT_S		300

/* Append a string literal without measuring it at run time. */
#define ADD_LIT(b, s)		evbuffer_add((b), (s), sizeof(s) - 1)

enum api {
	API_CHAT,
	API_COMPLETIONS,
	API_EMBEDDINGS,
	API_RESPONSES,
	API_MESSAGES
};

enum job_state {
	JOB_DELAYED,		/* whole reply waits for latency-ms */
	JOB_STREAMING,		/* head sent, events pending */
	JOB_DRAINING,		/* dropping: wait for the socket buffer */
	JOB_HUNG		/* x-mock-hang: never answered */
};

struct job;

/* One per client connection that has sent a request. */
struct conn {
	struct conn			*next;		/* hash chain */
	struct evhttp_connection	*evcon;
	unsigned long			 nreq;
	struct job			*job;		/* in flight, or NULL */
};

/* One per answered API request that outlives the request callback. */
struct job {
	enum job_state		 state;
	enum api		 api;
	struct evhttp_request	*req;
	struct conn		*conn;
	struct event		*timer;
	struct event		*watch;		/* hung: client EOF */
	struct evbuffer		*buf;
	int			 stream;
	int			 include_usage;
	int			 tool_call;	/* answer with a call of tool[] */
	size_t			 toollen;
	char			 tool[MODEL_MAX];
	int			 status;	/* >= 400: fail with it */
	int			 chunks;
	int			 delay_ms;
	int			 latency_ms;
	int			 drop_after;	/* -1: never */
	int			 next_ev;	/* next SSE event index */
	long			 prompt;
	long			 completion;
	long			 cached;
	unsigned long		 seq;
	long long		 created;
	size_t			 modellen;
	char			 model[MODEL_MAX];
};

struct last_hdr {
	char	*name;
	char	*value;
};

/* The last request that was not /stats or /last, for GET /last. */
struct last {
	char		 method[16];
	char		*uri;
	struct last_hdr	*hdrs;
	size_t		 nhdrs;
	size_t		 body_length;
	struct evbuffer	*body;
};

static struct {
	/* options */
	int			 chunks;
	int			 delay_ms;
	int			 latency_ms;
	int			 fail_status;
	unsigned long		 close_after;
	long long		 created;	/* --created; 0: the time of each */
	int			 quiet;
	/* runtime */
	struct event_base	*base;
	SSL_CTX			*ssl_ctx;
	unsigned long		 seq;
	unsigned long long	 connections;
	unsigned long long	 requests;
	unsigned long long	 active;
	struct conn		*conns[CONN_BUCKETS];
	struct last		 last;
} mk = {
	.chunks = DEFAULT_CHUNKS,
};

static const char *const words[] = {
	"Hello", "from", "the", "mock", "upstream.", "This", "answer", "is",
	"deterministic", "and", "cheap", "to", "make."
};
#define NWORDS	(sizeof(words) / sizeof(words[0]))

static const double embedding[8] = {
	0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8
};

static void	job_step(struct job *);
static void	job_free(struct job *);

/*
 * Numbers: CLI and headers.
 */

static int
parse_long(const char *s, long min, long max, long *out)
{
	char	*end;
	long	 v;

	if (s == NULL || *s == '\0')
		return (-1);
	errno = 0;
	v = strtol(s, &end, 10);
	while (*end == ' ' || *end == '\t')
		end++;
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return (-1);
	*out = v;
	return (0);
}

static long
opt_num(const char *name, const char *s, long min, long max)
{
	long	v;

	if (parse_long(s, min, max, &v) == -1)
		errx(2, "--%s: '%s' is not a number in [%ld, %ld]", name, s,
		    min, max);
	return (v);
}

/*
 * A scanner for the top level of a JSON object: enough to find "model",
 * "stream" and "stream_options" without tokenizing the messages.
 */

static const char *
skip_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return (p);
}

/* p at the opening quote; returns just past the closing quote or NULL. */
static const char *
skip_string(const char *p, const char *e)
{
	for (p++; p < e; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return (p + 1);
	}
	return (NULL);
}

static const char *
skip_value(const char *p, const char *e)
{
	int	depth = 0;

	if (p >= e)
		return (NULL);
	if (*p == '"')
		return (skip_string(p, e));
	if (*p != '{' && *p != '[') {
		while (p < e && *p != ',' && *p != '}' && *p != ']' &&
		    *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			p++;
		return (p);
	}
	while (p < e) {
		switch (*p) {
		case '"':
			if ((p = skip_string(p, e)) == NULL)
				return (NULL);
			continue;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (--depth == 0)
				return (p + 1);
			break;
		}
		p++;
	}
	return (NULL);
}

/*
 * Iterate the members of the object at *pp ('{' on the first call).
 * Returns 1 with the raw key (without quotes) and value spans, 0 at the
 * end or on malformed input.
 */
static int
obj_next(const char **pp, const char *e, const char **key, size_t *klen,
    const char **val, size_t *vlen)
{
	const char	*p = skip_ws(*pp, e), *q;

	if (p >= e)
		return (0);
	if (*p == '{' || *p == ',')
		p = skip_ws(p + 1, e);
	if (p >= e || *p != '"')
		return (0);
	if ((q = skip_string(p, e)) == NULL)
		return (0);
	*key = p + 1;
	*klen = (size_t)(q - p) - 2;
	p = skip_ws(q, e);
	if (p >= e || *p != ':')
		return (0);
	p = skip_ws(p + 1, e);
	if ((q = skip_value(p, e)) == NULL)
		return (0);
	*val = p;
	*vlen = (size_t)(q - p);
	*pp = q;
	return (1);
}

static int
key_is(const char *key, size_t klen, const char *name)
{
	return (klen == strlen(name) && memcmp(key, name, klen) == 0);
}

static int
val_true(const char *val, size_t vlen)
{
	return (vlen == 4 && memcmp(val, "true", 4) == 0);
}

/* The value of member NAME of the object at VAL (VLEN bytes), or NULL. */
static const char *
member(const char *val, size_t vlen, const char *name, size_t *n)
{
	const char	*q = val, *k, *v;
	size_t		 kl, vl;

	if (vlen == 0 || *val != '{')
		return (NULL);
	while (obj_next(&q, val + vlen, &k, &kl, &v, &vl))
		if (key_is(k, kl, name)) {
			*n = vl;
			return (v);
		}
	return (NULL);
}

/*
 * "tools": the first tool's name (OpenAI's function.name, Anthropic's
 * name), copied into the job when it is a plain string.
 */
static void
scan_tools(struct job *job, const char *val, size_t vlen)
{
	const char	*e = val + vlen, *t, *fn, *name;
	size_t		 tl, fl, nl, i;

	t = skip_ws(val + 1, e);
	if (vlen < 2 || *val != '[' || t >= e || *t != '{' ||
	    skip_value(t, e) == NULL)
		return;
	tl = (size_t)(skip_value(t, e) - t);
	name = member(t, tl, "name", &nl);
	if (name == NULL && (fn = member(t, tl, "function", &fl)) != NULL)
		name = member(fn, fl, "name", &nl);
	if (name == NULL || nl < 3 || *name != '"' || nl - 2 >= MODEL_MAX)
		return;
	for (i = 1; i < nl - 1; i++)
		if (name[i] == '\\' || (unsigned char)name[i] < 0x20)
			return;
	memcpy(job->tool, name + 1, nl - 2);
	job->toollen = nl - 2;
}

/* Whether the last of "messages" carries a tool result. */
static int
last_is_tool_result(const char *val, size_t vlen)
{
	const char	*e = val + vlen, *p, *q, *last = NULL;
	size_t		 n = 0;

	if (vlen < 2 || *val != '[')
		return (0);
	for (p = skip_ws(val + 1, e); p < e && *p != ']';
	    p = skip_ws(p, e)) {
		if ((q = skip_value(p, e)) == NULL)
			return (0);
		last = p;
		n = (size_t)(q - p);
		p = skip_ws(q, e);
		if (p < e && *p == ',')
			p++;
	}
	if (last == NULL)
		return (0);
	return (memmem(last, n, "\"tool_result\"", 13) != NULL ||
	    memmem(last, n, "\"role\":\"tool\"", 13) != NULL ||
	    memmem(last, n, "\"role\": \"tool\"", 14) != NULL);
}

static void
scan_body(struct job *job, const char *body, size_t len)
{
	const char	*p = body, *e = body + len, *key, *val, *q;
	const char	*msgs = NULL;
	size_t		 klen, vlen, ok, i, mlen = 0;

	p = skip_ws(p, e);
	if (p >= e || *p != '{')
		return;
	while (obj_next(&p, e, &key, &klen, &val, &vlen)) {
		if (key_is(key, klen, "model") && vlen >= 2 && *val == '"') {
			ok = vlen - 2 < sizeof(job->model);
			for (i = 1; ok && i < vlen - 1; i++)
				if ((unsigned char)val[i] < 0x20)
					ok = 0;
			if (ok) {
				memcpy(job->model, val + 1, vlen - 2);
				job->modellen = vlen - 2;
			}
		} else if (key_is(key, klen, "stream"))
			job->stream = val_true(val, vlen);
		else if (key_is(key, klen, "stream_options") && *val == '{') {
			const char	*ik, *iv;
			size_t		 ikl, ivl;

			q = val;
			while (obj_next(&q, val + vlen, &ik, &ikl, &iv, &ivl))
				if (key_is(ik, ikl, "include_usage"))
					job->include_usage = val_true(iv, ivl);
		} else if (key_is(key, klen, "tools"))
			scan_tools(job, val, vlen);
		else if (key_is(key, klen, "messages")) {
			msgs = val;
			mlen = vlen;
		}
	}
	job->tool_call = job->toollen > 0 &&
	    (job->api == API_CHAT || job->api == API_MESSAGES) &&
	    !last_is_tool_result(msgs, mlen);
}

/*
 * JSON output helpers.
 */

/* Length of the valid UTF-8 sequence at s (c >= 0x80), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t	len, i;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return (0);
	if (len > n)
		return (0);
	for (i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return (0);
	/* Overlong three-byte forms, surrogates, beyond U+10FFFF. */
	if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
	    (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
		return (0);
	return (len);
}

/*
 * Write s as the inside of a JSON string.  Bytes that are not UTF-8 are
 * written as \u00XX (read as Latin-1) so that the output always parses.
 */
static void
json_escape(struct evbuffer *out, const char *s, size_t n)
{
	static const char	 hex[] = "0123456789abcdef";
	const unsigned char	*u = (const unsigned char *)s;
	size_t			 i = 0, run = 0, ul;
	unsigned char		 c;
	char			 esc[6];

	while (i < n) {
		c = u[i];
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		if (c >= 0x80 && (ul = utf8_len(u + i, n - i)) > 0) {
			i += ul;
			continue;
		}
		if (i > run)
			evbuffer_add(out, s + run, i - run);
		run = ++i;
		switch (c) {
		case '"':
			ADD_LIT(out, "\\\"");
			break;
		case '\\':
			ADD_LIT(out, "\\\\");
			break;
		case '\n':
			ADD_LIT(out, "\\n");
			break;
		case '\r':
			ADD_LIT(out, "\\r");
			break;
		case '\t':
			ADD_LIT(out, "\\t");
			break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 0xf];
			evbuffer_add(out, esc, 6);
		}
	}
	if (n > run)
		evbuffer_add(out, s + run, n - run);
}

static void
add_text(struct evbuffer *b, int chunks)
{
	int	i;

	for (i = 0; i < chunks; i++)
		evbuffer_add_printf(b, "%s ", words[i % NWORDS]);
}

static const char *
status_reason(int code)
{
	switch (code) {
	case 200: return ("OK");
	case 400: return ("Bad Request");
	case 401: return ("Unauthorized");
	case 403: return ("Forbidden");
	case 404: return ("Not Found");
	case 405: return ("Method Not Allowed");
	case 408: return ("Request Timeout");
	case 409: return ("Conflict");
	case 413: return ("Payload Too Large");
	case 422: return ("Unprocessable Entity");
	case 429: return ("Too Many Requests");
	case 500: return ("Internal Server Error");
	case 502: return ("Bad Gateway");
	case 503: return ("Service Unavailable");
	case 504: return ("Gateway Timeout");
	case 529: return ("Overloaded");
	default: return (code < 400 ? "OK" : "Error");
	}
}

/* OpenAI's error "type" and "code" for a status, as its API sends them. */
static void
openai_error_kind(int code, const char **type, const char **ecode)
{
	*ecode = "null";
	switch (code) {
	case 401:
		*type = "invalid_request_error";
		*ecode = "\"invalid_api_key\"";
		break;
	case 429:
		*type = "requests";
		*ecode = "\"rate_limit_exceeded\"";
		break;
	default:
		*type = code >= 500 ? "server_error" : "invalid_request_error";
	}
}

static const char *
anthropic_error_type(int code)
{
	switch (code) {
	case 401: return ("authentication_error");
	case 403: return ("permission_error");
	case 404: return ("not_found_error");
	case 413: return ("request_too_large");
	case 429: return ("rate_limit_error");
	case 529: return ("overloaded_error");
	default: return (code >= 500 ? "api_error" : "invalid_request_error");
	}
}

/*
 * Gzip B in place when the request asks with x-mock-gzip: 1 and an
 * Accept-Encoding naming gzip, as a provider's edge does (bench: the cost
 * of metering a compressed answer).  0, or -1 if it could not.
 */
static int
gzip_body(struct evhttp_request *req, struct evbuffer *b)
{
	struct evkeyvalq	*ih = evhttp_request_get_input_headers(req);
	const char		*v = evhttp_find_header(ih, "x-mock-gzip");
	const char		*ae = evhttp_find_header(ih, "accept-encoding");
	size_t			 n = evbuffer_get_length(b);
	unsigned char		*in, *out;
	uLong			 cap;
	z_stream		 z;
	int			 rc;

	if (v == NULL || strcmp(v, "1") != 0 || ae == NULL ||
	    strstr(ae, "gzip") == NULL)
		return -1;
	in = evbuffer_pullup(b, -1);
	cap = compressBound((uLong)n) + 32;
	if ((out = malloc(cap)) == NULL)
		return -1;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(out);
		return -1;
	}
	z.next_in = in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	rc = deflate(&z, Z_FINISH);
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(out);
		return -1;
	}
	evbuffer_drain(b, n);
	evbuffer_add(b, out, z.total_out);
	free(out);
	return 0;
}

static void
send_json(struct evhttp_request *req, int code, struct evbuffer *b)
{
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);

	evhttp_add_header(oh, "Content-Type", "application/json");
	if (code == 200 && gzip_body(req, b) == 0)
		evhttp_add_header(oh, "Content-Encoding", "gzip");
	evhttp_send_reply(req, code, status_reason(code), b);
}

static void
send_error(struct evhttp_request *req, int code, int anthropic,
    const char *msg)
{
	struct evbuffer	*b;
	const char	*type, *ecode;

	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (anthropic)
		evbuffer_add_printf(b, "{\"type\":\"error\",\"error\":"
		    "{\"type\":\"%s\",\"message\":\"%s\"}}",
		    anthropic_error_type(code), msg);
	else {
		openai_error_kind(code, &type, &ecode);
		evbuffer_add_printf(b, "{\"error\":{\"message\":\"%s\","
		    "\"type\":\"%s\",\"param\":null,\"code\":%s}}",
		    msg, type, ecode);
	}
	send_json(req, code, b);
	evbuffer_free(b);
}

/*
 * Usage objects, one per API shape.
 */

static void
add_usage(struct evbuffer *b, const struct job *job)
{
	long	p = job->prompt, c = job->completion, k = job->cached;

	switch (job->api) {
	case API_CHAT:
		evbuffer_add_printf(b, "{\"prompt_tokens\":%ld,"
		    "\"completion_tokens\":%ld,\"total_tokens\":%ld,"
		    "\"prompt_tokens_details\":{\"cached_tokens\":%ld}}",
		    p, c, p + c, k);
		break;
	case API_COMPLETIONS:
		evbuffer_add_printf(b, "{\"prompt_tokens\":%ld,"
		    "\"completion_tokens\":%ld,\"total_tokens\":%ld}",
		    p, c, p + c);
		break;
	case API_EMBEDDINGS:
		evbuffer_add_printf(b, "{\"prompt_tokens\":%ld,"
		    "\"total_tokens\":%ld}", p, p);
		break;
	case API_RESPONSES:
		evbuffer_add_printf(b, "{\"input_tokens\":%ld,"
		    "\"input_tokens_details\":{\"cached_tokens\":%ld},"
		    "\"output_tokens\":%ld,"
		    "\"output_tokens_details\":{\"reasoning_tokens\":0},"
		    "\"total_tokens\":%ld}", p, k, c, p + c);
		break;
	case API_MESSAGES:
		evbuffer_add_printf(b, "{\"input_tokens\":%ld,"
		    "\"output_tokens\":%ld,\"cache_creation_input_tokens\":0,"
		    "\"cache_read_input_tokens\":%ld}", p, c, k);
		break;
	}
}

#define MODEL(j)	(int)(j)->modellen, (j)->model
#define TOOL(j)		(int)(j)->toollen, (j)->tool

/* A tool call's input, {"city":"Paris"}, as the pieces a stream sends
 * (each the inside of a JSON string), and whole. */
static const char *const tool_pieces[] = { "{\\\"city\\\":",
    "\\\"Paris\\\"}" };
#define TOOL_PIECES	((int)(sizeof(tool_pieces) / sizeof(tool_pieces[0])))
#define TOOL_INPUT	"{\"city\":\"Paris\"}"
#define TOOL_ARGS	"{\\\"city\\\":\\\"Paris\\\"}"

/* The Responses API object, also carried by response.completed. */
static void
add_response_obj(struct evbuffer *b, const struct job *job)
{
	evbuffer_add_printf(b, "{\"id\":\"resp_mock%lu\","
	    "\"object\":\"response\",\"created_at\":%lld,\"status\":\"completed\",\"model\":\"%.*s\","
	    "\"output\":[{\"type\":\"message\",\"id\":\"msg_mock%lu\","
	    "\"status\":\"completed\",\"role\":\"assistant\",\"content\":"
	    "[{\"type\":\"output_text\",\"annotations\":[],\"text\":\"",
	    job->seq, job->created, MODEL(job), job->seq);
	add_text(b, job->chunks);
	ADD_LIT(b, "\"}]}],\"usage\":");
	add_usage(b, job);
	ADD_LIT(b, "}");
}

/* A complete non-streamed answer. */
static void
build_full(struct evbuffer *b, const struct job *job)
{
	int	i;

	switch (job->api) {
	case API_CHAT:
		if (job->tool_call) {
			evbuffer_add_printf(b, "{\"id\":\"chatcmpl-mock%lu\","
			    "\"object\":\"chat.completion\",\"created\":%lld,"
			    "\"model\":\"%.*s\",\"choices\":[{\"index\":0,"
			    "\"message\":{\"role\":\"assistant\",\"content\":"
			    "null,\"tool_calls\":[{\"id\":\"call_mock%lu\","
			    "\"type\":\"function\",\"function\":{\"name\":"
			    "\"%.*s\",\"arguments\":\"" TOOL_ARGS "\"}}]},"
			    "\"finish_reason\":\"tool_calls\"}],\"usage\":",
			    job->seq, job->created, MODEL(job), job->seq,
			    TOOL(job));
			add_usage(b, job);
			ADD_LIT(b, "}");
			break;
		}
		evbuffer_add_printf(b, "{\"id\":\"chatcmpl-mock%lu\","
		    "\"object\":\"chat.completion\",\"created\":%lld,"
		    "\"model\":\"%.*s\",\"choices\":[{\"index\":0,"
		    "\"message\":{\"role\":\"assistant\",\"content\":\"",
		    job->seq, job->created, MODEL(job));
		add_text(b, job->chunks);
		evbuffer_add_printf(b, "\"},\"finish_reason\":\"stop\"}],"
		    "\"usage\":");
		add_usage(b, job);
		ADD_LIT(b, "}");
		break;
	case API_COMPLETIONS:
		evbuffer_add_printf(b, "{\"id\":\"cmpl-mock%lu\","
		    "\"object\":\"text_completion\",\"created\":%lld,"
		    "\"model\":\"%.*s\",\"choices\":[{\"index\":0,\"text\":\"",
		    job->seq, job->created, MODEL(job));
		add_text(b, job->chunks);
		evbuffer_add_printf(b, "\",\"logprobs\":null,"
		    "\"finish_reason\":\"stop\"}],\"usage\":");
		add_usage(b, job);
		ADD_LIT(b, "}");
		break;
	case API_EMBEDDINGS:
		evbuffer_add_printf(b, "{\"object\":\"list\",\"data\":"
		    "[{\"object\":\"embedding\",\"index\":0,\"embedding\":[");
		for (i = 0; i < 8; i++)
			evbuffer_add_printf(b, "%s%.1f", i ? "," : "",
			    embedding[i]);
		evbuffer_add_printf(b, "]}],\"model\":\"%.*s\",\"usage\":",
		    MODEL(job));
		add_usage(b, job);
		ADD_LIT(b, "}");
		break;
	case API_RESPONSES:
		add_response_obj(b, job);
		break;
	case API_MESSAGES:
		if (job->tool_call) {
			evbuffer_add_printf(b, "{\"id\":\"msg_mock%lu\","
			    "\"type\":\"message\",\"role\":\"assistant\","
			    "\"model\":\"%.*s\",\"content\":[{\"type\":"
			    "\"tool_use\",\"id\":\"toolu_mock%lu\",\"name\":"
			    "\"%.*s\",\"input\":" TOOL_INPUT "}],\"stop_reason\":"
			    "\"tool_use\",\"stop_sequence\":null,\"usage\":",
			    job->seq, MODEL(job), job->seq, TOOL(job));
			add_usage(b, job);
			ADD_LIT(b, "}");
			break;
		}
		evbuffer_add_printf(b, "{\"id\":\"msg_mock%lu\","
		    "\"type\":\"message\",\"role\":\"assistant\","
		    "\"model\":\"%.*s\",\"content\":[{\"type\":\"text\","
		    "\"text\":\"", job->seq, MODEL(job));
		add_text(b, job->chunks);
		evbuffer_add_printf(b, "\"}],\"stop_reason\":\"end_turn\","
		    "\"stop_sequence\":null,\"usage\":");
		add_usage(b, job);
		ADD_LIT(b, "}");
		break;
	}
}

/*
 * Streams.  Events are numbered: a prologue, then one event per content
 * chunk, then an epilogue; stream_event() writes event i.
 */

static int
stream_prologue(const struct job *job)
{
	switch (job->api) {
	case API_RESPONSES:
		return (1);
	case API_MESSAGES:
		return (2);
	case API_CHAT:
		return (job->tool_call ? 1 : 0);	/* the call's head */
	default:
		return (0);
	}
}

static int
stream_epilogue(const struct job *job)
{
	switch (job->api) {
	case API_RESPONSES:
		return (1);
	case API_MESSAGES:
		return (3);
	default:
		return (job->include_usage ? 2 : 1);
	}
}

/* Piece I of a streamed tool call's arguments. */
static void
stream_tool_piece(struct evbuffer *b, const struct job *job, int i)
{
	const char	*piece = tool_pieces[i % TOOL_PIECES];

	if (job->api == API_MESSAGES) {
		evbuffer_add_printf(b, "event: content_block_delta\n"
		    "data: {\"type\":\"content_block_delta\",\"index\":0,"
		    "\"delta\":{\"type\":\"input_json_delta\","
		    "\"partial_json\":\"%s\"}}\n\n", piece);
		return;
	}
	evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock%lu\","
	    "\"object\":\"chat.completion.chunk\",\"created\":%lld,"
	    "\"model\":\"%.*s\",\"choices\":[{\"index\":0,\"delta\":"
	    "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
	    "\"%s\"}}]},\"finish_reason\":%s}]%s}\n\n", job->seq,
	    job->created, MODEL(job), piece, i == job->chunks - 1 ?
	    "\"tool_calls\"" : "null", job->include_usage ?
	    ",\"usage\":null" : "");
}

static void
stream_content(struct evbuffer *b, const struct job *job, int i)
{
	const char	*w = words[i % NWORDS];
	const char	*fin = i == job->chunks - 1 ? "\"stop\"" : "null";
	const char	*usage = job->include_usage ? ",\"usage\":null" : "";

	if (job->tool_call) {
		stream_tool_piece(b, job, i);
		return;
	}
	switch (job->api) {
	case API_CHAT:
		evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock%lu\","
		    "\"object\":\"chat.completion.chunk\",\"created\":%lld,"
		    "\"model\":\"%.*s\",\"choices\":[{\"index\":0,\"delta\":{%s"
		    "\"content\":\"%s \"},\"finish_reason\":%s}]%s}\n\n",
		    job->seq, job->created, MODEL(job),
		    i == 0 ? "\"role\":\"assistant\"," : "", w, fin, usage);
		break;
	case API_COMPLETIONS:
		evbuffer_add_printf(b, "data: {\"id\":\"cmpl-mock%lu\","
		    "\"object\":\"text_completion\",\"created\":%lld,"
		    "\"model\":\"%.*s\",\"choices\":[{\"index\":0,"
		    "\"text\":\"%s \",\"logprobs\":null,\"finish_reason\":%s}]"
		    "%s}\n\n", job->seq, job->created, MODEL(job), w, fin,
		    usage);
		break;
	case API_RESPONSES:
		evbuffer_add_printf(b, "event: response.output_text.delta\n"
		    "data: {\"type\":\"response.output_text.delta\","
		    "\"sequence_number\":%d,\"item_id\":\"msg_mock%lu\","
		    "\"output_index\":0,\"content_index\":0,"
		    "\"delta\":\"%s \"}\n\n", i + 1, job->seq, w);
		break;
	case API_MESSAGES:
		evbuffer_add_printf(b, "event: content_block_delta\n"
		    "data: {\"type\":\"content_block_delta\",\"index\":0,"
		    "\"delta\":{\"type\":\"text_delta\",\"text\":\"%s \"}}\n\n",
		    w);
		break;
	case API_EMBEDDINGS:
		break;
	}
}

static void
stream_event(struct evbuffer *b, const struct job *job, int i)
{
	int	pro = stream_prologue(job);

	if (i >= pro && i < pro + job->chunks) {
		stream_content(b, job, i - pro);
		return;
	}
	switch (job->api) {
	case API_CHAT:
	case API_COMPLETIONS:
		if (i < pro) {		/* a tool call's id and name */
			evbuffer_add_printf(b, "data: {\"id\":\"chatcmpl-mock"
			    "%lu\",\"object\":\"chat.completion.chunk\","
			    "\"created\":%lld,\"model\":\"%.*s\",\"choices\":"
			    "[{\"index\":0,\"delta\":{\"role\":\"assistant\","
			    "\"content\":null,\"tool_calls\":[{\"index\":0,"
			    "\"id\":\"call_mock%lu\",\"type\":\"function\","
			    "\"function\":{\"name\":\"%.*s\",\"arguments\":"
			    "\"\"}}]},\"finish_reason\":null}]%s}\n\n", job->seq,
			    job->created, MODEL(job), job->seq, TOOL(job),
			    job->include_usage ? ",\"usage\":null" : "");
			break;
		}
		if (job->include_usage && i == pro + job->chunks) {
			evbuffer_add_printf(b, "data: {\"id\":\"%s%lu\","
			    "\"object\":\"%s\",\"created\":%lld,"
			    "\"model\":\"%.*s\",\"choices\":[],\"usage\":",
			    job->api == API_CHAT ? "chatcmpl-mock" : "cmpl-mock",
			    job->seq, job->api == API_CHAT ?
			    "chat.completion.chunk" : "text_completion",
			    job->created, MODEL(job));
			add_usage(b, job);
			ADD_LIT(b, "}\n\n");
		} else
			ADD_LIT(b, "data: [DONE]\n\n");
		break;
	case API_RESPONSES:
		if (i == 0) {
			evbuffer_add_printf(b, "event: response.created\n"
			    "data: {\"type\":\"response.created\","
			    "\"sequence_number\":0,\"response\":{\"id\":"
			    "\"resp_mock%lu\",\"object\":\"response\","
			    "\"created_at\":%lld,\"status\":\"in_progress\","
			    "\"model\":\"%.*s\",\"output\":[],\"usage\":null}}"
			    "\n\n", job->seq, job->created, MODEL(job));
			break;
		}
		evbuffer_add_printf(b, "event: response.completed\n"
		    "data: {\"type\":\"response.completed\","
		    "\"sequence_number\":%d,\"response\":", job->chunks + 1);
		add_response_obj(b, job);
		ADD_LIT(b, "}\n\n");
		break;
	case API_MESSAGES:
		switch (i < pro ? i : i - job->chunks) {
		case 0:
			evbuffer_add_printf(b, "event: message_start\n"
			    "data: {\"type\":\"message_start\",\"message\":"
			    "{\"id\":\"msg_mock%lu\",\"type\":\"message\","
			    "\"role\":\"assistant\",\"model\":\"%.*s\","
			    "\"content\":[],\"stop_reason\":null,"
			    "\"stop_sequence\":null,\"usage\":"
			    "{\"input_tokens\":%ld,\"output_tokens\":1,"
			    "\"cache_creation_input_tokens\":0,"
			    "\"cache_read_input_tokens\":%ld}}}\n\n",
			    job->seq, MODEL(job), job->prompt, job->cached);
			break;
		case 1:
			if (job->tool_call)
				evbuffer_add_printf(b, "event: "
				    "content_block_start\ndata: {\"type\":"
				    "\"content_block_start\",\"index\":0,"
				    "\"content_block\":{\"type\":\"tool_use\","
				    "\"id\":\"toolu_mock%lu\",\"name\":\"%.*s\","
				    "\"input\":{}}}\n\n", job->seq, TOOL(job));
			else
				evbuffer_add_printf(b, "event: "
				    "content_block_start\ndata: {\"type\":"
				    "\"content_block_start\",\"index\":0,"
				    "\"content_block\":{\"type\":\"text\","
				    "\"text\":\"\"}}\n\n");
			break;
		case 2:
			evbuffer_add_printf(b, "event: content_block_stop\n"
			    "data: {\"type\":\"content_block_stop\","
			    "\"index\":0}\n\n");
			break;
		case 3:
			evbuffer_add_printf(b, "event: message_delta\n"
			    "data: {\"type\":\"message_delta\",\"delta\":"
			    "{\"stop_reason\":\"%s\","
			    "\"stop_sequence\":null},\"usage\":"
			    "{\"output_tokens\":%ld}}\n\n", job->tool_call ?
			    "tool_use" : "end_turn", job->completion);
			break;
		default:
			evbuffer_add_printf(b, "event: message_stop\n"
			    "data: {\"type\":\"message_stop\"}\n\n");
			break;
		}
		break;
	case API_EMBEDDINGS:
		break;
	}
}

/*
 * Connections: a small hash from evhttp_connection to our state, filled
 * on the first request, emptied by the close callback.
 */

static size_t
conn_hash(const struct evhttp_connection *evcon)
{
	return ((size_t)(((uintptr_t)evcon >> 4) * 2654435761u) % CONN_BUCKETS);
}

static void
conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct conn		 *c = arg, **cp;
	struct job		 *job;
	struct evhttp_request	 *req;

	if ((job = c->job) != NULL) {
		/*
		 * The client went away while we held its request.  evhttp
		 * has detached the request from the connection and left it
		 * to us.
		 */
		req = job->req;
		job->conn = NULL;
		c->job = NULL;
		job_free(job);
		if (evhttp_request_get_connection(req) == NULL)
			evhttp_request_free(req);
	}
	for (cp = &mk.conns[conn_hash(evcon)]; *cp != NULL; cp = &(*cp)->next)
		if (*cp == c) {
			*cp = c->next;
			break;
		}
	mk.active--;
	free(c);
}

static struct conn *
conn_get(struct evhttp_connection *evcon)
{
	struct conn		*c;
	struct bufferevent	*bev;
	size_t			 h = conn_hash(evcon);
	evutil_socket_t		 fd;
	int			 one = 1;

	for (c = mk.conns[h]; c != NULL; c = c->next)
		if (c->evcon == evcon)
			return (c);
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return (NULL);
	c->evcon = evcon;
	c->next = mk.conns[h];
	mk.conns[h] = c;
	mk.active++;
	evhttp_connection_set_closecb(evcon, conn_closed, c);
	/* Streamed events are small writes: do not let Nagle hold them. */
	if ((bev = evhttp_connection_get_bufferevent(evcon)) != NULL &&
	    (fd = bufferevent_getfd(bev)) != -1)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	return (c);
}

static struct bufferevent *
accept_bev(struct event_base *base, void *arg)
{
	struct bufferevent	*bev;
	SSL			*ssl;

	mk.connections++;
	if (mk.ssl_ctx == NULL)
		return (bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE));
	if ((ssl = SSL_new(mk.ssl_ctx)) == NULL)
		return (NULL);
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		SSL_free(ssl);
		return (NULL);
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return (bev);
}

/*
 * Jobs.
 */

static void
job_free(struct job *job)
{
	if (job->conn != NULL && job->conn->job == job)
		job->conn->job = NULL;
	if (job->timer != NULL)
		event_free(job->timer);
	if (job->watch != NULL)
		event_free(job->watch);
	if (job->buf != NULL)
		evbuffer_free(job->buf);
	free(job);
}

static void job_timer_cb(evutil_socket_t, short, void *);

static int
job_arm(struct job *job, int ms)
{
	struct timeval	tv;

	if (job->timer == NULL &&
	    (job->timer = evtimer_new(mk.base, job_timer_cb, job)) == NULL)
		return (-1);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return (evtimer_add(job->timer, &tv));
}

/* Send the whole answer (or the error) and forget the request. */
static void
job_reply(struct job *job)
{
	if (job->status >= 400)
		send_error(job->req, job->status, job->api == API_MESSAGES,
		    "mock failure");
	else {
		build_full(job->buf, job);
		send_json(job->req, 200, job->buf);
	}
	job_free(job);
}

/* Stop the stream: close once the bytes sent so far have left. */
static void
job_drain(struct job *job)
{
	struct evhttp_connection	*evcon;
	struct bufferevent		*bev;

	job->state = JOB_DRAINING;
	evcon = evhttp_request_get_connection(job->req);
	bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
	if (bev != NULL &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		if (job_arm(job, DRAIN_POLL_MS) == -1)
			warnx("drop: cannot arm timer");
		return;
	}
	/* Unlink first so that the close callback finds no job. */
	job_free(job);
	if (evcon != NULL)
		evhttp_connection_free(evcon);
}

static void
job_step(struct job *job)
{
	int	pro = stream_prologue(job);
	int	total = pro + job->chunks + stream_epilogue(job);

	for (;;) {
		if (job->next_ev == total) {
			evhttp_send_reply_end(job->req);
			job_free(job);
			return;
		}
		if (job->drop_after >= 0 && job->drop_after <= job->chunks &&
		    job->next_ev == pro + job->drop_after) {
			/* Never from inside the request callback: defer. */
			job->state = JOB_DRAINING;
			if (job_arm(job, 0) == -1)
				warnx("drop: cannot arm timer");
			return;
		}
		stream_event(job->buf, job, job->next_ev++);
		evhttp_send_reply_chunk(job->req, job->buf);
		if (job->delay_ms > 0 && job->next_ev < total) {
			if (job_arm(job, job->delay_ms) == 0)
				return;
			warnx("stream: cannot arm timer");
		}
	}
}

static void
job_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job	*job = arg;

	switch (job->state) {
	case JOB_DELAYED:
		job_reply(job);
		break;
	case JOB_STREAMING:
		job_step(job);
		break;
	case JOB_DRAINING:
		job_drain(job);
		break;
	case JOB_HUNG:
		break;
	}
}

/*
 * evhttp does not read while a request is being answered, so it would
 * never see a client give up on a hung request.  Peek at the socket
 * instead: EOF or an error frees the connection (and, through the close
 * callback, the job); data means a pipelined request, so stop watching.
 */
static void
hang_watch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job			*job = arg;
	struct evhttp_connection	*evcon;
	ssize_t				 n;
	char				 ch;

	n = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0) {
		event_del(job->watch);
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR))
		return;
	if ((evcon = evhttp_request_get_connection(job->req)) != NULL)
		evhttp_connection_free(evcon);	/* frees job */
	else
		event_del(job->watch);
}

static void
job_hang(struct job *job)
{
	struct evhttp_connection	*evcon;
	struct bufferevent		*bev;
	evutil_socket_t			 fd;

	job->state = JOB_HUNG;
	if ((evcon = evhttp_request_get_connection(job->req)) == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL ||
	    (fd = bufferevent_getfd(bev)) == -1)
		return;
	job->watch = event_new(mk.base, fd, EV_READ | EV_PERSIST,
	    hang_watch_cb, job);
	if (job->watch == NULL || event_add(job->watch, NULL) == -1)
		warnx("hang: cannot watch the connection");
}

static void
job_start(struct job *job)
{
	struct evkeyvalq	*oh;

	oh = evhttp_request_get_output_headers(job->req);
	if (job->status >= 400 || !job->stream) {
		job->state = JOB_DELAYED;
		if (job->latency_ms > 0 && job_arm(job, job->latency_ms) == 0)
			return;
		job_reply(job);
		return;
	}
	job->state = JOB_STREAMING;
	evhttp_add_header(oh, "Content-Type", "text/event-stream");
	evhttp_add_header(oh, "Cache-Control", "no-cache");
	evhttp_send_reply_start(job->req, 200, "OK");
	if (job->latency_ms > 0 && job_arm(job, job->latency_ms) == 0)
		return;
	job_step(job);
}

/*
 * GET /stats and GET /last.
 */

static void
last_clear(void)
{
	size_t	i;

	for (i = 0; i < mk.last.nhdrs; i++) {
		free(mk.last.hdrs[i].name);
		free(mk.last.hdrs[i].value);
	}
	free(mk.last.hdrs);
	free(mk.last.uri);
	mk.last.hdrs = NULL;
	mk.last.nhdrs = 0;
	mk.last.uri = NULL;
	mk.last.body_length = 0;
	if (mk.last.body != NULL)
		evbuffer_drain(mk.last.body, evbuffer_get_length(mk.last.body));
}

static const char *
method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET: return ("GET");
	case EVHTTP_REQ_POST: return ("POST");
	case EVHTTP_REQ_HEAD: return ("HEAD");
	case EVHTTP_REQ_PUT: return ("PUT");
	case EVHTTP_REQ_DELETE: return ("DELETE");
	case EVHTTP_REQ_OPTIONS: return ("OPTIONS");
	case EVHTTP_REQ_TRACE: return ("TRACE");
	case EVHTTP_REQ_CONNECT: return ("CONNECT");
	case EVHTTP_REQ_PATCH: return ("PATCH");
	default: return ("UNKNOWN");
	}
}

/* Remember the request; moves the body out of the request's buffer. */
static void
last_record(struct evhttp_request *req, struct evbuffer *body)
{
	struct evkeyvalq	*ih = evhttp_request_get_input_headers(req);
	struct evkeyval		*kv;
	struct last_hdr		*h;
	size_t			 n = 0;
	char			*s;

	last_clear();
	if (mk.last.body == NULL && (mk.last.body = evbuffer_new()) == NULL)
		return;
	snprintf(mk.last.method, sizeof(mk.last.method), "%s",
	    method_name(evhttp_request_get_command(req)));
	mk.last.uri = strdup(evhttp_request_get_uri(req));
	TAILQ_FOREACH(kv, ih, next)
		n++;
	if (n > 0 && (mk.last.hdrs = calloc(n, sizeof(*h))) != NULL) {
		TAILQ_FOREACH(kv, ih, next) {
			h = &mk.last.hdrs[mk.last.nhdrs];
			if ((h->name = strdup(kv->key)) == NULL ||
			    (h->value = strdup(kv->value)) == NULL) {
				free(h->name);
				h->name = NULL;
				break;
			}
			for (s = h->name; *s != '\0'; s++)
				*s = (char)tolower((unsigned char)*s);
			mk.last.nhdrs++;
		}
	}
	mk.last.body_length = evbuffer_get_length(body);
	evbuffer_add_buffer(mk.last.body, body);
}

static void
serve_last(struct evhttp_request *req)
{
	struct evbuffer	*b;
	size_t		 i, len;
	const char	*body;

	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (mk.last.uri == NULL) {
		evbuffer_add_printf(b, "{}");
		send_json(req, 200, b);
		evbuffer_free(b);
		return;
	}
	evbuffer_add_printf(b, "{\"method\":\"%s\",\"path\":\"", mk.last.method);
	json_escape(b, mk.last.uri, strlen(mk.last.uri));
	ADD_LIT(b, "\",\"headers\":{");
	for (i = 0; i < mk.last.nhdrs; i++) {
		evbuffer_add_printf(b, "%s\"", i ? "," : "");
		json_escape(b, mk.last.hdrs[i].name,
		    strlen(mk.last.hdrs[i].name));
		ADD_LIT(b, "\":\"");
		json_escape(b, mk.last.hdrs[i].value,
		    strlen(mk.last.hdrs[i].value));
		ADD_LIT(b, "\"");
	}
	len = evbuffer_get_length(mk.last.body);
	body = (const char *)evbuffer_pullup(mk.last.body, -1);
	evbuffer_add_printf(b, "},\"body_length\":%zu,\"body\":\"",
	    mk.last.body_length);
	if (body != NULL)
		json_escape(b, body, len);
	ADD_LIT(b, "\"}");
	send_json(req, 200, b);
	evbuffer_free(b);
}

static void
serve_stats(struct evhttp_request *req)
{
	struct evbuffer	*b;

	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(b, "{\"connections\":%llu,\"requests\":%llu,"
	    "\"active_connections\":%llu}", mk.connections, mk.requests,
	    mk.active);
	send_json(req, 200, b);
	evbuffer_free(b);
}

/*
 * The request callback.
 */

static int
route(const char *path, size_t len, enum api *api)
{
	static const struct {
		const char	*path;
		enum api	 api;
	} routes[] = {
		{ "/v1/chat/completions",	API_CHAT },
		{ "/v1/completions",		API_COMPLETIONS },
		{ "/v1/embeddings",		API_EMBEDDINGS },
		{ "/v1/responses",		API_RESPONSES },
		{ "/v1/messages",		API_MESSAGES },
	};
	static const struct {
		const char	*tail;
		enum api	 api;
	} azure[] = {
		{ "/chat/completions",	API_CHAT },
		{ "/completions",	API_COMPLETIONS },
		{ "/embeddings",	API_EMBEDDINGS },
	};
	size_t	i, tl;
	const char *slash;

	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strlen(routes[i].path) == len &&
		    memcmp(routes[i].path, path, len) == 0) {
			*api = routes[i].api;
			return (0);
		}
	/* AWS Bedrock: /model/ID/invoke, Anthropic's Messages (the
	 * signature is not checked: the bench measures sluice's cost) */
	if (len > 7 && memcmp(path, "/model/", 7) == 0 &&
	    (slash = memchr(path + 7, '/', len - 7)) != NULL &&
	    (size_t)(path + len - slash) == 7 && memcmp(slash, "/invoke", 7) == 0) {
		*api = API_MESSAGES;
		return (0);
	}
	/* Azure OpenAI: /openai/deployments/NAME/<endpoint> */
	if (len > 20 && memcmp(path, "/openai/deployments/", 20) == 0 &&
	    (slash = memchr(path + 20, '/', len - 20)) != NULL) {
		tl = len - (size_t)(slash - path);
		for (i = 0; i < sizeof(azure) / sizeof(azure[0]); i++)
			if (strlen(azure[i].tail) == tl &&
			    memcmp(azure[i].tail, slash, tl) == 0) {
				*api = azure[i].api;
				return (0);
			}
	}
	return (-1);
}

/* Per-request overrides, read in one pass over the headers. */
struct overrides {
	long		 chunks, delay_ms, latency_ms, status;
	long		 prompt, completion, cached, drop_after;
	int		 close, hang;
	const char	*request_id;
};

static void
read_overrides(struct evhttp_request *req, struct overrides *o)
{
	struct evkeyval	*kv;
	const char	*k;
	long		 v;

	o->chunks = o->delay_ms = o->latency_ms = o->status = -1;
	o->prompt = o->completion = o->cached = o->drop_after = -1;
	o->close = o->hang = 0;
	o->request_id = NULL;
	TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
		if (strcasecmp(kv->key, "x-request-id") == 0) {
			o->request_id = kv->value;
			continue;
		}
		if (strncasecmp(kv->key, "x-mock-", 7) != 0)
			continue;
		k = kv->key + 7;
		if (parse_long(kv->value, 0, INT_MAX, &v) == -1)
			continue;
		if (strcasecmp(k, "chunks") == 0)
			o->chunks = v;
		else if (strcasecmp(k, "chunk-delay-ms") == 0)
			o->delay_ms = v;
		else if (strcasecmp(k, "latency-ms") == 0)
			o->latency_ms = v;
		else if (strcasecmp(k, "status") == 0)
			o->status = v;
		else if (strcasecmp(k, "prompt-tokens") == 0)
			o->prompt = v;
		else if (strcasecmp(k, "completion-tokens") == 0)
			o->completion = v;
		else if (strcasecmp(k, "cached-tokens") == 0)
			o->cached = v;
		else if (strcasecmp(k, "drop-after-chunks") == 0)
			o->drop_after = v;
		else if (strcasecmp(k, "close") == 0)
			o->close = v == 1;
		else if (strcasecmp(k, "hang") == 0)
			o->hang = v == 1;
	}
}

static void
handle(struct evhttp_request *req, void *arg)
{
	struct evhttp_connection	*evcon;
	struct evkeyvalq		*oh;
	struct evbuffer			*in;
	struct overrides		 o;
	struct conn			*c;
	struct job			*job;
	const char			*uri, *body;
	size_t				 plen, blen;
	enum api			 api;
	int				 is_post, status;

	evcon = evhttp_request_get_connection(req);
	oh = evhttp_request_get_output_headers(req);
	in = evhttp_request_get_input_buffer(req);
	uri = evhttp_request_get_uri(req);
	plen = strcspn(uri, "?");
	is_post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
	read_overrides(req, &o);
	if (o.request_id != NULL)
		evhttp_add_header(oh, "x-request-id", o.request_id);

	c = evcon != NULL ? conn_get(evcon) : NULL;
	if (c != NULL)
		c->nreq++;
	if (o.close || (c != NULL && mk.close_after > 0 &&
	    c->nreq == mk.close_after))
		evhttp_add_header(oh, "Connection", "close");

	if (!is_post && plen == 6 && memcmp(uri, "/stats", 6) == 0) {
		serve_stats(req);
		return;
	}
	if (!is_post && plen == 5 && memcmp(uri, "/last", 5) == 0) {
		serve_last(req);
		return;
	}
	mk.requests++;

	blen = evbuffer_get_length(in);
	body = blen > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
	if (body == NULL) {
		body = "";
		blen = 0;
	}

	if (route(uri, plen, &api) == -1) {
		last_record(req, in);
		send_error(req, status = 404, 0, "unknown path");
		goto log;
	}
	if (!is_post) {
		last_record(req, in);
		send_error(req, status = 405, api == API_MESSAGES, "use POST");
		goto log;
	}
	if ((job = calloc(1, sizeof(*job))) == NULL ||
	    (job->buf = evbuffer_new()) == NULL) {
		free(job);
		last_record(req, in);
		send_error(req, status = 500, api == API_MESSAGES,
		    "out of memory");
		goto log;
	}
	job->api = api;
	job->req = req;
	job->seq = ++mk.seq;
	job->created = mk.created > 0 ? mk.created : (long long)time(NULL);
	memcpy(job->model, DEFAULT_MODEL, sizeof(DEFAULT_MODEL) - 1);
	job->modellen = sizeof(DEFAULT_MODEL) - 1;
	scan_body(job, body, blen);
	if (api == API_EMBEDDINGS)
		job->stream = 0;
	last_record(req, in);

	job->chunks = job->tool_call ? TOOL_PIECES : o.chunks >= 0 ?
	    (int)o.chunks : mk.chunks;
	job->delay_ms = o.delay_ms >= 0 ? (int)o.delay_ms : mk.delay_ms;
	job->latency_ms = o.latency_ms >= 0 ? (int)o.latency_ms :
	    mk.latency_ms;
	job->drop_after = (int)o.drop_after;
	job->status = o.status >= 0 ? (int)o.status : mk.fail_status;
	job->prompt = o.prompt >= 0 ? o.prompt :
	    (blen / 4 > 0 ? (long)(blen / 4) : 1);
	job->completion = o.completion >= 0 ? o.completion :
	    (job->stream ? job->chunks : DEFAULT_COMPLETION);
	job->cached = o.cached >= 0 ? o.cached : 0;
	if (c != NULL) {
		job->conn = c;
		c->job = job;
	}
	status = job->status >= 400 ? job->status : 200;

	if (o.hang) {
		job_hang(job);
		status = 0;
		goto log;
	}
	if (!mk.quiet)
		fprintf(stderr, "mockllm: %s %.*s %d stream=%d P=%ld C=%ld "
		    "K=%ld\n", method_name(evhttp_request_get_command(req)),
		    (int)plen, uri, status, job->stream, job->prompt,
		    job->completion, job->cached);
	job_start(job);		/* may free job */
	return;
log:
	if (!mk.quiet)
		fprintf(stderr, "mockllm: %s %.*s %d\n",
		    method_name(evhttp_request_get_command(req)), (int)plen,
		    uri, status);
	return;
}

/*
 * Startup.
 */

static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char	 h1[] = "\x08http/1.1";
	unsigned char			*sel;

	if (SSL_select_next_proto(&sel, outlen, h1, sizeof(h1) - 1, in,
	    inlen) != OPENSSL_NPN_NEGOTIATED)
		return (SSL_TLSEXT_ERR_NOACK);
	*out = sel;
	return (SSL_TLSEXT_ERR_OK);
}

static SSL_CTX *
tls_init(const char *cert, const char *key)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		errx(1, "SSL_CTX_new failed");
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		errx(1, "cannot require TLS 1.2");
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		ERR_print_errors_fp(stderr);
		errx(1, "%s: cannot load certificate", cert);
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_print_errors_fp(stderr);
		errx(1, "%s: cannot load private key", key);
	}
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	return (ctx);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static __attribute__((noreturn)) void
usage(void)
{
	fprintf(stderr, "usage: mockllm [-l host:port] [--cert file --key file] "
	    "[--chunks n]\n"
	    "\t[--chunk-delay-ms ms] [--latency-ms ms] [--fail-status code]\n"
	    "\t[--close-after n] [--created seconds] [--quiet]\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	static const struct option	 longopts[] = {
		{ "listen",		required_argument,	NULL, 'l' },
		{ "cert",		required_argument,	NULL, 'c' },
		{ "key",		required_argument,	NULL, 'k' },
		{ "chunks",		required_argument,	NULL, 'n' },
		{ "chunk-delay-ms",	required_argument,	NULL, 'd' },
		{ "latency-ms",		required_argument,	NULL, 'L' },
		{ "fail-status",	required_argument,	NULL, 'f' },
		{ "close-after",	required_argument,	NULL, 'C' },
		{ "created",		required_argument,	NULL, 'T' },
		{ "quiet",		no_argument,		NULL, 'q' },
		{ "help",		no_argument,		NULL, 'h' },
		{ NULL,			0,			NULL, 0 }
	};
	const char			*listen_arg = "127.0.0.1:0";
	const char			*cert = NULL, *key = NULL;
	char				 host[256], addr[INET6_ADDRSTRLEN];
	const char			*colon;
	struct evhttp			*http;
	struct evhttp_bound_socket	*bound;
	struct event			*sigterm, *sigint;
	struct sockaddr_storage		 ss;
	socklen_t			 sslen = sizeof(ss);
	size_t				 hlen;
	long				 port;
	int				 ch;

	while ((ch = getopt_long(argc, argv, "l:qh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			listen_arg = optarg;
			break;
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'n':
			mk.chunks = (int)opt_num("chunks", optarg, 0, 1000000);
			break;
		case 'd':
			mk.delay_ms = (int)opt_num("chunk-delay-ms", optarg, 0,
			    INT_MAX);
			break;
		case 'L':
			mk.latency_ms = (int)opt_num("latency-ms", optarg, 0,
			    INT_MAX);
			break;
		case 'f':
			mk.fail_status = (int)opt_num("fail-status", optarg,
			    100, 599);
			break;
		case 'C':
			mk.close_after = (unsigned long)opt_num("close-after",
			    optarg, 0, LONG_MAX);
			break;
		case 'T':
			mk.created = opt_num("created", optarg, 0, LONG_MAX);
			break;
		case 'q':
			mk.quiet = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc || (cert == NULL) != (key == NULL))
		usage();

	if ((colon = strrchr(listen_arg, ':')) == NULL)
		errx(2, "-l %s: expected HOST:PORT", listen_arg);
	hlen = (size_t)(colon - listen_arg);
	if (hlen >= 2 && listen_arg[0] == '[' && listen_arg[hlen - 1] == ']') {
		listen_arg++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		errx(2, "-l: bad host");
	memcpy(host, listen_arg, hlen);
	host[hlen] = '\0';
	port = opt_num("listen port", colon + 1, 0, 65535);

	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		err(1, "signal");
	if (cert != NULL)
		mk.ssl_ctx = tls_init(cert, key);
	if ((mk.base = event_base_new()) == NULL)
		errx(1, "event_base_new failed");
	if ((http = evhttp_new(mk.base)) == NULL)
		errx(1, "evhttp_new failed");
	evhttp_set_timeout(http, HTTP_TIMEOUT_S);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_bevcb(http, accept_bev, NULL);
	evhttp_set_gencb(http, handle, NULL);
	if ((bound = evhttp_bind_socket_with_handle(http, host,
	    (unsigned short)port)) == NULL)
		errx(1, "cannot listen on %s:%ld", host, port);
	if (getsockname(evhttp_bound_socket_get_fd(bound),
	    (struct sockaddr *)&ss, &sslen) == -1)
		err(1, "getsockname");
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6	*s6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
		printf("listening on [%s]:%u\n", addr, ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in	*s4 = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
		printf("listening on %s:%u\n", addr, ntohs(s4->sin_port));
	}
	fflush(stdout);

	if ((sigterm = evsignal_new(mk.base, SIGTERM, on_signal, mk.base)) ==
	    NULL || evsignal_add(sigterm, NULL) == -1 ||
	    (sigint = evsignal_new(mk.base, SIGINT, on_signal, mk.base)) ==
	    NULL || evsignal_add(sigint, NULL) == -1)
		errx(1, "cannot install signal handlers");

	if (event_base_dispatch(mk.base) == -1)
		errx(1, "event loop failed");
	/* Exit without tearing down: pending jobs would only slow us. */
	return (0);
}
