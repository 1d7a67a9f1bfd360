/*
 * bedrock.c - Anthropic's Messages API as AWS Bedrock serves it.
 *
 * The request: the same body less "model" and "stream" (Bedrock refuses
 * both: the path carries the model, the action the streaming) and with
 * "anthropic_version": "bedrock-2023-05-31"; signed with SigV4 (service
 * "bedrock", the upstream's region) over host, x-amz-date and, with
 * temporary credentials, x-amz-security-token.  The model id goes into
 * the path percent-encoded (an id such as "...-v1:0" becomes "...-v1%3A0",
 * as AWS's SDKs send it), and the canonical URI encodes that path once
 * more, as SigV4 wants for every service but S3.
 *
 * The streamed answer: AWS event-stream frames, each event's payload
 * {"bytes": base64 of one Anthropic event}.  Each is turned back into the
 * SSE event Anthropic would have sent, as it arrives, so that the client,
 * the usage tap and the translate stage see an Anthropic stream.  The
 * usage is the Anthropic events' own (message_start, message_delta);
 * the "amazon-bedrock-invocationMetrics" Bedrock adds to the last event
 * says the same numbers and goes through untouched.  A frame that fails
 * its CRC, is malformed or is an exception ends the stream: the client
 * gets one Anthropic error event and nothing after it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/base64.h"
#include "common/json_scan.h"
#include "worker/bedrock.h"
#include "worker/reply.h"

size_t
bedrock_target(const struct cfg_upstream *u, const char *model, int stream,
    char *out, size_t cap)
{
	const char	*id = cfg_deployment_for(u, model);
	const char	*act = stream ? "/invoke-with-response-stream" : "/invoke";
	size_t		 n = strlen(id), len;

	if (cap < BEDROCK_TARGET_MAX)
		return 0;
	if (n > 256)
		n = 256;	/* no model id is; Bedrock answers 4xx */
	memcpy(out, "/model/", 7);
	len = 7 + sigv4_uri_encode(id, n, 0, out + 7);
	memcpy(out + len, act, strlen(act) + 1);
	return len + strlen(act);
}

static int
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * The bytes of member F (its value found by json_scan_top, its key KLEN
 * bytes without escapes) to cut from BODY: from the comma before it, or,
 * if it is the first member, from its key through the comma after it.
 */
static void
member_span(const char *body, size_t len, const struct json_field *f,
    size_t klen, size_t *a, size_t *b)
{
	size_t	 end = f->end + (f->type == JV_STRING), i;

	i = f->start - (f->type == JV_STRING);	/* the value's first byte */
	while (i > 0 && body[i - 1] != ':')
		i--;
	i--;					/* at ':' */
	while (i > 0 && is_ws(body[i - 1]))
		i--;
	i -= klen + 2;				/* at the key's '"' */
	while (i > 0 && is_ws(body[i - 1]))
		i--;
	if (body[i - 1] == ',') {
		*a = i - 1;
		*b = end;
		return;
	}
	*a = i;					/* after '{' */
	while (end < len && is_ws(body[end]))
		end++;
	if (end < len && body[end] == ',')
		end++;
	*b = end;
}

int
bedrock_body(const char *body, size_t len, struct evbuffer *out)
{
	return bedrock_body_edit(body, len, BEDROCK_VERSION, 1, out);
}

int
bedrock_body_edit(const char *body, size_t len, const char *version,
    int drop_stream, struct evbuffer *out)
{
	struct json_field f[3] = {
		{ .key = "model" }, { .key = "stream" },
		{ .key = "anthropic_version" },
	};
	size_t	 cut[2][2], ncut = 0, pos, close, open = 0, i;
	int	 members = 0;

	if (json_scan_top(body, len, f, 3) == -1 || f[0].count > 1 ||
	    f[1].count > 1)
		return -1;
	for (i = 0; i < (drop_stream ? 2u : 1u); i++)
		if (f[i].type != JV_NONE) {
			member_span(body, len, &f[i], strlen(f[i].key),
			    &cut[ncut][0], &cut[ncut][1]);
			ncut++;
		}
	if (ncut == 2 && cut[1][0] < cut[0][0]) {
		size_t t0 = cut[0][0], t1 = cut[0][1];

		cut[0][0] = cut[1][0];
		cut[0][1] = cut[1][1];
		cut[1][0] = t0;
		cut[1][1] = t1;
	}
	if (ncut == 2 && cut[1][0] < cut[0][1]) {	/* they touch */
		if (cut[1][1] > cut[0][1])
			cut[0][1] = cut[1][1];
		ncut = 1;
		/* the first member went with its comma: so does the second */
		if (body[cut[0][0]] != ',') {
			while (cut[0][1] < len && is_ws(body[cut[0][1]]))
				cut[0][1]++;
			if (cut[0][1] < len && body[cut[0][1]] == ',')
				cut[0][1]++;
		}
	}
	while (open < len && body[open] != '{')
		open++;
	close = len;
	while (close > 0 && body[close - 1] != '}')
		close--;
	close--;				/* at the last '}' */
	pos = open;
	for (i = 0; i <= ncut; i++) {
		size_t	 to = i < ncut ? cut[i][0] : close, k;

		for (k = pos; k < to && !members; k++)
			members = k > open && !is_ws(body[k]);
		evbuffer_add(out, body + pos, to - pos);
		if (i < ncut)
			pos = cut[i][1];
	}
	if (f[2].type == JV_NONE)
		evbuffer_add_printf(out, "%s\"anthropic_version\":\"%s\"",
		    members ? "," : "", version);
	evbuffer_add(out, "}", 1);
	return 0;
}

long
bedrock_sign(struct sigv4_key *k, const struct cfg_upstream *u,
    const char *host, size_t host_len, const char *path, size_t path_len,
    const void *body, size_t body_len, time_t now, char *out)
{
	struct sigv4_req rq;
	char		 date[SIGV4_DATE_LEN + 1], hash[SIGV4_HEX + 1];
	char		 hostv[300], uri[3 * 1024 + 1], auth[512];
	long		 n;
	int		 len;

	if (host_len >= sizeof(hostv) || path_len > 1024)
		return -1;
	memcpy(hostv, host, host_len);
	hostv[host_len] = '\0';
	sigv4_uri_encode(path, path_len, 1, uri);
	sigv4_amz_date(now, date);
	sigv4_sha256_hex(body, body_len, hash);
	memset(&rq, 0, sizeof(rq));
	rq.method = "POST";
	rq.uri = uri;
	rq.query = "";
	rq.h[0].name = "host";
	rq.h[0].value = hostv;
	rq.h[1].name = "x-amz-date";
	rq.h[1].value = date;
	rq.nh = 2;
	if (u->aws_token != NULL) {
		rq.h[2].name = "x-amz-security-token";
		rq.h[2].value = u->aws_token;
		rq.nh = 3;
	}
	rq.payload_hash = hash;
	rq.amz_date = date;
	rq.region = u->region;
	rq.service = "bedrock";
	rq.access_key = u->aws_key_id;
	rq.secret = u->aws_secret;
	if ((n = sigv4_authorization(k, &rq, NULL, auth, sizeof(auth))) < 0)
		return -1;
	len = snprintf(out, BEDROCK_SIGN_MAX, "x-amz-date: %s\r\n%s%s%s"
	    "Authorization: %s\r\n", date, u->aws_token != NULL ?
	    "x-amz-security-token: " : "", u->aws_token != NULL ?
	    u->aws_token : "", u->aws_token != NULL ? "\r\n" : "", auth);
	return len < 0 || len >= BEDROCK_SIGN_MAX ? -1 : len;
}

void
bedrock_error(int status, const char *body, size_t len, struct evbuffer *out)
{
	struct json_field f[4] = {
		{ .key = "message" }, { .key = "Message" }, { .key = "type" },
		{ .key = "error" },
	};
	struct json_field g = { .key = "message" };
	const char	*base = body;
	const struct json_field *m = NULL;

	if (json_scan_top(body, len, f, 4) == 0) {
		if (f[2].type == JV_STRING && f[2].end - f[2].start == 5 &&
		    memcmp(body + f[2].start, "error", 5) == 0) {
			evbuffer_add(out, body, len);
			return;
		}
		m = f[0].type == JV_STRING ? &f[0] : f[1].type == JV_STRING ?
		    &f[1] : NULL;
		/* Google's (Vertex AI): {"error": {"code", "message", ...}} */
		if (m == NULL && f[3].type == JV_OBJECT &&
		    json_scan_top(body + f[3].start, f[3].end - f[3].start, &g,
		    1) == 0 && g.type == JV_STRING) {
			base = body + f[3].start;
			m = &g;
		}
	}
	evbuffer_add_printf(out, "{\"type\":\"error\",\"error\":{\"type\":"
	    "\"%s\",\"message\":\"", reply_anthropic_type(status));
	if (m != NULL)
		evbuffer_add(out, base + m->start, m->end - m->start);
	else
		evbuffer_add_printf(out, "the upstream answered %d", status);
	evbuffer_add(out, "\"}}", 3);
}

void
bedrock_stream_init(struct bedrock_stream *bs)
{
	memset(bs, 0, sizeof(*bs));
	es_init(&bs->es);
}

void
bedrock_stream_free(struct bedrock_stream *bs)
{
	es_free(&bs->es);
	free(bs->scratch);
	memset(bs, 0, sizeof(*bs));
}

/* The Anthropic error type for a Bedrock exception. */
static const char *
error_type(const char *exception)
{
	if (strcmp(exception, "throttlingException") == 0)
		return "rate_limit_error";
	if (strcmp(exception, "serviceUnavailableException") == 0)
		return "overloaded_error";
	if (strcmp(exception, "validationException") == 0)
		return "invalid_request_error";
	return "api_error";
}

/*
 * The one error event that ends the stream.  MSG (MLEN bytes) is JSON
 * string content, already escaped (a span of the exception's payload),
 * or NULL for WHY's text, which has no quote or backslash.
 */
static int
stream_fail(struct bedrock_stream *bs, const char *type, const char *msg,
    size_t mlen)
{
	bs->failed = 1;
	evbuffer_add_printf(bs->sse, "event: error\ndata: {\"type\":\"error\","
	    "\"error\":{\"type\":\"%s\",\"message\":\"", type);
	if (msg != NULL)
		evbuffer_add(bs->sse, msg, mlen);
	else
		evbuffer_add_printf(bs->sse, "upstream stream: %s", bs->why);
	evbuffer_add(bs->sse, "\"}}\n\n", 5);
	return -1;
}

/* A frame: an event's "bytes" as its SSE event; an exception's message
 * as the error event. */
static int
on_frame(void *arg, const struct es_msg *m)
{
	struct bedrock_stream	*bs = arg;
	struct json_field	 f = { .key = "bytes" }, t = { .key = "type" };
	const char		*js = (const char *)m->payload;
	long			 n;

	if (strcmp(m->message_type, "event") != 0) {
		struct json_field msg = { .key = "message" };

		snprintf(bs->why, sizeof(bs->why), "%s %s",
		    m->message_type[0] != '\0' ? m->message_type : "frame",
		    m->exception_type[0] != '\0' ? m->exception_type :
		    m->error_code);
		if (json_scan_top(js, m->payload_len, &msg, 1) == 0 &&
		    msg.type == JV_STRING)
			stream_fail(bs, error_type(m->exception_type),
			    js + msg.start, msg.end - msg.start);
		else
			stream_fail(bs, error_type(m->exception_type), NULL, 0);
		return -1;
	}
	if (strcmp(m->event_type, "chunk") != 0)
		return 0;		/* not an answer's event: none known */
	if (json_scan_top(js, m->payload_len, &f, 1) == -1 ||
	    f.type != JV_STRING) {
		snprintf(bs->why, sizeof(bs->why), "a chunk without \"bytes\"");
		return stream_fail(bs, "api_error", NULL, 0);
	}
	if (B64_DECODED_MAX(f.end - f.start) > bs->scratch_cap) {
		size_t	 cap = B64_DECODED_MAX(f.end - f.start);
		char	*s = realloc(bs->scratch, cap);

		if (s == NULL) {
			snprintf(bs->why, sizeof(bs->why), "out of memory");
			return stream_fail(bs, "api_error", NULL, 0);
		}
		bs->scratch = s;
		bs->scratch_cap = cap;
	}
	n = b64_decode(js + f.start, f.end - f.start,
	    (unsigned char *)bs->scratch);
	if (n <= 0 || json_scan_top(bs->scratch, (size_t)n, &t, 1) == -1 ||
	    t.type != JV_STRING || t.end - t.start > 64 ||
	    memchr(bs->scratch, '\n', (size_t)n) != NULL) {
		snprintf(bs->why, sizeof(bs->why), "a chunk whose \"bytes\" "
		    "is not one event");
		return stream_fail(bs, "api_error", NULL, 0);
	}
	evbuffer_add(bs->sse, "event: ", 7);
	evbuffer_add(bs->sse, bs->scratch + t.start, t.end - t.start);
	evbuffer_add(bs->sse, "\ndata: ", 7);
	evbuffer_add(bs->sse, bs->scratch, (size_t)n);
	evbuffer_add(bs->sse, "\n\n", 2);
	return 0;
}

int
bedrock_stream_feed(struct bedrock_stream *bs, const char *p, size_t n,
    struct evbuffer *sse)
{
	enum es_error	 e;

	if (bs->failed)
		return -1;
	bs->sse = sse;
	e = es_feed(&bs->es, p, n, on_frame, bs);
	if (e == ES_OK)
		return 0;
	if (bs->failed)
		return -1;	/* on_frame wrote the event */
	snprintf(bs->why, sizeof(bs->why), "%s", es_strerror(e));
	return stream_fail(bs, "api_error", NULL, 0);
}

int
bedrock_stream_end(struct bedrock_stream *bs, struct evbuffer *sse)
{
	if (bs->failed || es_pending(&bs->es) == 0)
		return bs->failed ? -1 : 0;
	bs->sse = sse;
	snprintf(bs->why, sizeof(bs->why), "the answer ended inside a frame");
	return stream_fail(bs, "api_error", NULL, 0);
}
