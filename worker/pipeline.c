/*
 * pipeline.c - the request pipeline, from a parsed head to the usage
 * event.
 *
 * Per connection it keeps one struct exchange (allocated at accept, so a
 * keep-alive request allocates nothing); its per-request part is reset
 * in pl_finish, the handler's end of client_finalize.  Nothing here
 * touches a socket: replies go through the client core, the upstream
 * through the proxy; a request in the other format goes through the
 * translate stage (xlate.h) on its way there.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/clock.h"
#include "common/json_strict.h"
#include "common/keys.h"
#include "common/log.h"
#include "shm/inflight.h"
#include "worker/acache.h"
#include "worker/attrib.h"
#include "worker/auth.h"
#include "worker/meter.h"
#include "worker/models.h"
#include "worker/pipeline.h"
#include "worker/proxy.h"
#include "worker/tls.h"
#include "worker/upstream.h"
#include "worker/usage.h"
#include "worker/xlate.h"

struct exchange {
	struct client	*c;
	struct proxy	 px;		/* its own reset: proxy_reset */
	struct xlate	*xl;		/* its own reset: xlate_reset; made
					   by the connection's first
					   translated request, so that one
					   that never translates pays
					   nothing for it */
	/* the answer cache's part: set by acache_begin, ended (and reset)
	 * by acache_end, so a request the cache never saw costs nothing */
	struct acache_req ac;
	/* per request: zeroed in pl_finish from here on */
	const struct key_entry *key;	/* the caller's key, NULL = none */
	const char	*model;		/* what the upstream is asked for */
	struct auth_holds hold;		/* of the key's limits, until charged */
	char		 alias_tok[CFG_PATTERN_MAX + 2];	/* "alias model" */
};

static void	*pl_attach(struct client *);
static void	 pl_detach(void *);
static void	 pl_head(struct client *);
static void	 pl_body(struct client *);
static void	 pl_finish(struct client *);
static void	 pl_bill(struct client *, struct proxy *);
static int	 pl_deployment_name_ok(const char *);
static int	 pl_attrib_head(struct exchange *);
static int	 pl_attrib_body(struct client *, const char *,
		    const struct json_strict_field *,
		    const struct json_strict_field *);
static int64_t	 pl_output_limit(struct client *, const struct cfg_route *,
		    const char *, const struct json_strict_field *, int);

const struct client_handler pipeline_handler = {
	pl_attach, pl_detach, pl_head, pl_finish,
};

static void *
pl_attach(struct client *c)
{
	struct exchange *x;

	if ((x = calloc(1, sizeof(*x))) == NULL)
		return NULL;
	x->c = c;
	if (proxy_init(&x->px, c) == -1) {
		proxy_free(&x->px);
		free(x);
		return NULL;
	}
	return x;
}

static void
pl_detach(void *arg)
{
	struct exchange *x = arg;

	proxy_free(&x->px);
	if (x->xl != NULL) {
		xlate_free(x->xl);
		free(x->xl);
	}
	free(x);
}

static void
pl_refuse(struct client *c, const struct auth_verdict *v)
{
	c->r.retry_after_s = v->retry_after_s;
	client_error(c, v->status, v->type, v->code, "%s", v->msg);
}

/* Authenticate at the head; 0 admitted, -1 answered. */
static int
pl_auth_head(struct exchange *x)
{
	struct client		*c = x->c;
	struct auth_verdict	 v;
	int			 rc;

	rc = auth_check_head(c->w, &c->r.hd, tls_peer(sbuf_ssl(&c->sb)), &x->key, &v);
	if (x->key != NULL)
		ev_str(c->r.ev->key_name, sizeof(c->r.ev->key_name),
		    x->key->name, strlen(x->key->name));
	if (rc == -1) {
		pl_refuse(c, &v);
		return -1;
	}
	return 0;
}

/*
 * For whom, from the head: the key's team, the tags (the key's and
 * x-sluice-tags) and x-sluice-user.  0 ok, -1 answered (400).
 */
static int
pl_attrib_head(struct exchange *x)
{
	struct client			*c = x->c;
	struct usage_event		*ev = c->r.ev;
	const struct key_entry		*t;
	const struct http_header	*h;
	char				 err[128];

	if ((t = keys_team(c->w->cfg->keys, x->key)) != NULL)
		snprintf(ev->team, sizeof(ev->team), "%s", t->name);
	h = http_find(&c->r.hd, "x-sluice-tags");
	if (attrib_tags(x->key != NULL ? x->key->tags : NULL,
	    h != NULL ? h->value : "", h != NULL ? h->value_len : 0, ev->tags,
	    sizeof(ev->tags), err, sizeof(err)) == -1) {
		ev->tags[0] = '\0';
		client_error(c, 400, "invalid_request_error", "invalid_tags",
		    "%s.", err);
		return -1;
	}
	if ((h = http_find(&c->r.hd, "x-sluice-user")) != NULL &&
	    attrib_user(h->value, h->value_len, ev->end_user,
	    sizeof(ev->end_user)) == -1) {
		client_error(c, 400, "invalid_request_error",
		    "invalid_end_user", "x-sluice-user: an end user is 1 to %d "
		    "bytes without control characters.", EV_USER_MAX - 1);
		return -1;
	}
	return 0;
}

/*
 * The end user the body names (OpenAI's "user", Anthropic's
 * metadata.user_id), unless x-sluice-user did.  0 ok, -1 answered.
 */
static int
pl_attrib_body(struct client *c, const char *body,
    const struct json_strict_field *user, const struct json_strict_field *md)
{
	struct usage_event	*ev = c->r.ev;
	char			 id[EV_USER_MAX];
	struct json_strict_field f = { .key = "user_id", .buf = id,
	    .bufsize = sizeof(id) };
	enum json_strict_rc	 rc = JSON_STRICT_OK;
	const char		*v = NULL;
	size_t			 len = 0;

	if (ev->end_user[0] != '\0')
		return 0;
	if (user->type == JV_STRING) {
		v = user->buf;
		len = user->len;
	} else if (md->type == JV_OBJECT && (rc = json_strict_read(body +
	    md->start, md->end - md->start, &f, 1, NULL)) == JSON_STRICT_OK &&
	    f.type == JV_STRING) {
		v = id;
		len = f.len;
	}
	if (rc == JSON_STRICT_OK && (v == NULL ||
	    attrib_user(v, len, ev->end_user, sizeof(ev->end_user)) == 0))
		return 0;
	ev->end_user[0] = '\0';
	client_error(c, 400, "invalid_request_error", "invalid_end_user",
	    rc == JSON_STRICT_OK || rc == JSON_STRICT_TOO_LONG ?
	    "The end user (user, metadata.user_id) is 1 to %d bytes without "
	    "control characters." : "metadata has more than one \"user_id\" "
	    "(keys are compared decoded, and across case).", EV_USER_MAX - 1);
	return -1;
}

static void
pl_list_models(struct exchange *x)
{
	struct client	*c = x->c;
	struct evbuffer	*b;

	if (pl_auth_head(x) == -1)
		return;
	if ((b = evbuffer_new()) == NULL) {
		client_error(c, 500, "server_error", "no_memory",
		    "out of memory");
		return;
	}
	models_list(c->w, x->key,
	    http_find(&c->r.hd, "anthropic-version") != NULL, b);
	client_reply_json(c, 200, b);
	evbuffer_free(b);
}

static void
pl_head(struct client *c)
{
	struct exchange		*x = c->hdata;
	const struct http_head	*hd = &c->r.hd;
	const struct endpoint	*ep = c->r.ep;

	int			 get, post;

	xlate_format_name(c->r.ev->client_format, ep->flags & EP_ANTHROPIC);
	/* RFC 9110 9.1: methods are case-sensitive; "PoSt" is not POST */
	get = hd->method_len == 3 && memcmp(hd->method, "GET", 3) == 0;
	post = hd->method_len == 4 && memcmp(hd->method, "POST", 4) == 0;
	if (!get && !post) {
		client_error(c, 405, "invalid_request_error",
		    "method_not_allowed", "%.*s is not allowed; use POST",
		    (int)hd->method_len, hd->method);
		return;
	}
	if ((ep->flags & EP_LOCAL) && get) {
		pl_list_models(x);
		return;
	}
	if (!(ep->flags & EP_PROXIED)) {
		client_error(c, 404, "invalid_request_error", "unknown_url",
		    "Unknown request URL: %.*s %.*s", (int)hd->method_len,
		    hd->method, (int)hd->path_len, hd->target);
		return;
	}
	if (!post) {
		client_error(c, 405, "invalid_request_error",
		    "method_not_allowed", "%.*s is not allowed here; use POST",
		    (int)hd->method_len, hd->method);
		return;
	}
	if (pl_auth_head(x) == -1 || pl_attrib_head(x) == -1)
		return;
	if (meter_lane_full(c->w)) {
		/* metering_full reject: not served unmetered */
		c->r.retry_after_s = 1;
		client_error(c, 503, "server_error", "metering_full",
		    "Usage metering is behind; retry shortly.");
		return;
	}
	client_read_body(c, pl_body);
}

/*
 * An OpenAI stream reports usage only when asked with
 * stream_options.include_usage; ask on the client's behalf so that every
 * stream is metered.  The member is replaced outright, whatever the
 * client wrote there (null, false, an object with other members): an
 * edit inside a value the reader did not fully check could change what
 * the upstream reads.  The extra final chunk (empty choices, a usage
 * object) is part of the documented protocol; SDKs accept it.  0, or -1
 * answered.
 */
static int
pl_ask_stream_usage(struct exchange *x, const struct cfg_route *route,
    const char *body, size_t len, const struct json_strict_field *so)
{
	struct client			*c = x->c;
	const struct cfg_upstream	*u;
	struct json_strict_field	 iu = { .key = "include_usage" };
	size_t				 open = 0;

	u = &c->w->cfg->upstreams[route->upstream[0]];
	if (CFG_SPEAKS_ANTHROPIC(u->protocol) ||
	    !(c->r.ep->flags & EP_STREAM_USAGE))
		return 0;
	if (so->type == JV_OBJECT &&
	    json_strict_read(body + so->start, so->end - so->start, &iu, 1,
	    NULL) != JSON_STRICT_OK) {
		client_error(c, 400, "invalid_request_error",
		    "duplicate_field", "stream_options has more than one "
		    "\"include_usage\"");
		return -1;
	}
	if (so->type != JV_NONE) {
		proxy_add_edit(&x->px, so->start, so->end - so->start,
		    "{\"include_usage\":true}");
		return 0;
	}
	/* the reader saw one object, so its '{' is the first non-blank */
	while (open < len && body[open] != '{')
		open++;
	proxy_add_edit(&x->px, open + 1, 0,
	    "\"stream_options\":{\"include_usage\":true},");
	return 0;
}

/*
 * Azure serves only what has a deployment path (EP: the endpoint as the
 * upstream serves it, after any translation), under a deployment name
 * that cannot leave its path segment.
 */
static int
pl_check_azure(struct client *c, const struct cfg_route *route,
    const char *model, const struct endpoint *ep)
{
	const struct cfg_upstream	*u;
	int				 i;

	/* every upstream a failover may reach, not only the first */
	for (i = 0; i < route->nupstreams; i++) {
		u = &c->w->cfg->upstreams[route->upstream[i]];
		/* Bedrock and Vertex serve Messages only (invoke, rawPredict) */
		if ((u->protocol == PROTO_BEDROCK ||
		    u->protocol == PROTO_VERTEX) && (ep->len != 12 ||
		    memcmp(ep->path, "/v1/messages", 12) != 0)) {
			client_error(c, 400, "invalid_request_error",
			    "unsupported_endpoint", "%.*s is not served by a "
			    "%s upstream.", (int)c->r.hd.path_len,
			    c->r.hd.target, u->protocol == PROTO_BEDROCK ?
			    "Bedrock" : "Vertex AI");
			return -1;
		}
		if (u->protocol != PROTO_AZURE)
			continue;
		if (ep->azure_tail == NULL) {
			client_error(c, 400, "invalid_request_error",
			    "unsupported_endpoint", "%.*s is not served by an "
			    "Azure OpenAI upstream.", (int)c->r.hd.path_len,
			    c->r.hd.target);
			return -1;
		}
		if (cfg_deployment_find(u, model) == NULL &&
		    !pl_deployment_name_ok(model)) {
			client_error(c, 400, "invalid_request_error",
			    "invalid_deployment", "The model `%s` has no "
			    "deployment, and is not a valid deployment name "
			    "(letters, digits, '-', '_', '.').", model);
			return -1;
		}
	}
	return 0;
}

/*
 * The most output tokens the request allows: the largest of the N limits
 * it names (F; a number that is no integer counts rounded up), or
 * default_max_tokens (the route's max_tokens if an Anthropic upstream
 * gets more when it is translated to); 0 where nothing is generated
 * (embeddings, token counts).
 */
static int64_t
pl_output_limit(struct client *c, const struct cfg_route *route,
    const char *body, const struct json_strict_field *f, int n)
{
	const struct endpoint	*ep = c->r.ep;
	int64_t			 most = -1;
	double			 d;
	char			 num[32];
	int			 i;

	if (ep == NULL || !(ep->flags & EP_GENERATES))
		return 0;
	for (i = 0; i < n; i++) {
		if (f[i].type != JV_NUMBER || f[i].end - f[i].start >=
		    sizeof(num))
			continue;
		memcpy(num, body + f[i].start, f[i].end - f[i].start);
		num[f[i].end - f[i].start] = '\0';
		d = strtod(num, NULL);
		if (d > 1e9)
			d = 1e9;
		if (d >= 0 && (int64_t)d + (d > (int64_t)d) > most)
			most = (int64_t)d + (d > (int64_t)d);
	}
	if (most >= 0)
		return most;
	/* none named: what a translation to Anthropic asks for, if more */
	if (CFG_SPEAKS_ANTHROPIC(c->w->cfg->upstreams[route->upstream[0]].
	    protocol) && route->max_tokens > c->w->cfg->default_max_tokens)
		return route->max_tokens;
	return c->w->cfg->default_max_tokens;
}

/*
 * /v1/messages/count_tokens for an upstream that has no such endpoint:
 * answered here, with the estimate sluice charges a request whose
 * upstream reports no usage (the body's bytes over
 * USAGE_BYTES_PER_TOKEN, rounded up).
 */
static void
pl_count_tokens(struct client *c, size_t len)
{
	struct evbuffer *b;

	if ((b = evbuffer_new()) == NULL) {
		client_error(c, 500, "server_error", "no_memory",
		    "out of memory");
		return;
	}
	evbuffer_add_printf(b, "{\"input_tokens\":%zu}\n",
	    (len + USAGE_BYTES_PER_TOKEN - 1) / USAGE_BYTES_PER_TOKEN);
	client_reply_json(c, 200, b);
	evbuffer_free(b);
}

/*
 * The translate stage.  A request whose format is not its upstream's is
 * rewritten for the upstream, and its answer for the client (xlate.h);
 * a route with "translate off" refuses it instead, and so does a
 * construct that has no translation (400, named).  Chat completions and
 * Messages are what translate; an Anthropic count_tokens is answered
 * locally.  1 translated, 0 formats match, -1 answered.
 */
static int
pl_translate(struct exchange *x, const struct cfg_route *route,
    const char *body, size_t len)
{
	struct client			*c = x->c;
	struct usage_event		*ev = c->r.ev;
	const struct cfg_upstream	*u;
	struct xlate_req_opts		 o;
	struct xlate_err		 err;
	int				 from_an, to_an;

	u = &c->w->cfg->upstreams[route->upstream[0]];
	from_an = (c->r.ep->flags & EP_ANTHROPIC) != 0;
	to_an = CFG_SPEAKS_ANTHROPIC(u->protocol);
	xlate_format_name(ev->upstream_format, to_an);
	if (from_an == to_an)
		return 0;
	if (!route->translate) {
		client_error(c, 400, "invalid_request_error",
		    "protocol_mismatch", "The model `%s` is served by an%s "
		    "upstream; send it to %s.", ev->model, to_an ?
		    " Anthropic" : " OpenAI-format", to_an ? "/v1/messages" :
		    "/v1/chat/completions");
		return -1;
	}
	if (from_an && strcmp(c->r.ep->path, "/v1/messages/count_tokens") ==
	    0) {
		pl_count_tokens(c, len);
		return -1;
	}
	if (strcmp(c->r.ep->path, from_an ? "/v1/messages" :
	    "/v1/chat/completions") != 0) {
		client_error(c, 400, "invalid_request_error",
		    "unsupported_endpoint", "%.*s cannot be translated for "
		    "`%s`, served by an%s upstream: only %s is.",
		    (int)c->r.hd.path_len, c->r.hd.target, ev->model, to_an ?
		    " Anthropic" : " OpenAI-format", from_an ? "/v1/messages" :
		    "/v1/chat/completions");
		return -1;
	}
	if (x->xl == NULL && (x->xl = calloc(1, sizeof(*x->xl))) == NULL) {
		client_error(c, 500, "server_error", "no_memory",
		    "out of memory");
		return -1;
	}
	o.model = x->model;
	o.max_tokens = route->max_tokens;
	/* OpenAI's own API wants the new name; compatible servers the old */
	o.max_completion = u->protocol == PROTO_AZURE ||
	    strcmp(u->host, "api.openai.com") == 0;
	if (xlate_request(x->xl, to_an ? XLATE_TO_ANTHROPIC : XLATE_TO_OPENAI,
	    &c->w->json, body, len, &o, ev->ts_start_us / 1000000,
	    &err) == -1) {
		client_error(c, 400, "invalid_request_error", "untranslatable",
		    "%s", err.msg);
		return -1;
	}
	proxy_translate(&x->px, x->xl);
	return 1;
}

/* A model name that may stand as Azure's deployment path segment. */
static int
pl_deployment_name_ok(const char *s)
{
	if (*s == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return 0;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
		    *s == '.'))
			return 0;
	return 1;
}

/*
 * The whole body is here.  It is read once, strictly (json_strict.h): what
 * sluice authorizes, routes, prices and edits is what any upstream's
 * parser reads, or the request is refused.
 */
static void
pl_body(struct client *c)
{
	struct exchange		*x = c->hdata;
	struct worker		*w = c->w;
	struct usage_event	*ev = c->r.ev;
	const struct cfg_route	*route;
	const struct cfg_alias	*alias;
	struct auth_verdict	 v;
	struct json_strict_err	 err;
	const char		*body;
	char			 model[EV_MODEL_MAX];
	size_t			 len = evbuffer_get_length(c->body), mlen;
	char			 user[EV_USER_MAX];
	struct json_strict_field f[8] = {
		{ .key = "model", .buf = model, .bufsize = sizeof(model) },
		{ .key = "stream" }, { .key = "stream_options" },
		/* the output limits: Messages and chat, chat, Responses */
		{ .key = "max_tokens" }, { .key = "max_completion_tokens" },
		{ .key = "max_output_tokens" },
		/* the end user: OpenAI's, Anthropic's */
		{ .key = "user", .buf = user, .bufsize = sizeof(user) },
		{ .key = "metadata" },
	};

	body = (const char *)evbuffer_pullup(c->body, -1);
	switch (body == NULL ? JSON_STRICT_INVALID :
	    json_strict_read(body, len, f, 8, &err)) {
	case JSON_STRICT_OK:
		break;
	case JSON_STRICT_INVALID:
		client_error(c, 400, "invalid_request_error", "invalid_json",
		    "We could not parse the JSON body of your request: it is "
		    "not valid JSON (RFC 8259) at byte %zu.",
		    body == NULL ? 0 : err.off);
		return;
	case JSON_STRICT_DUPLICATE:
	case JSON_STRICT_CASE_VARIANT:
		/* parsers disagree on which one counts: refuse, do not pick */
		client_error(c, 400, "invalid_request_error",
		    "duplicate_field", "The request body has more than one "
		    "\"%s\" (keys are compared decoded, and across case).",
		    err.field >= 0 ? f[err.field].key : "field");
		return;
	case JSON_STRICT_TOO_LONG:
		if (err.field == 6) {
			client_error(c, 400, "invalid_request_error",
			    "invalid_end_user", "The end user (user) is longer "
			    "than %d bytes.", EV_USER_MAX - 1);
			return;
		}
		client_error(c, 400, "invalid_request_error", "invalid_model",
		    "The model name is longer than %zu bytes.",
		    sizeof(ev->model) - 1);
		return;
	}
	if (f[0].type != JV_STRING) {
		client_error(c, 400, "invalid_request_error", "missing_model",
		    "you must provide a model parameter");
		return;
	}
	if (!f[0].printable) {
		/* it never reaches a log line, a URL or a row */
		client_error(c, 400, "invalid_request_error", "invalid_model",
		    "The model name must be printable ASCII without spaces.");
		return;
	}
	mlen = f[0].len;
	memcpy(ev->model, model, mlen + 1);
	if (pl_attrib_body(c, body, &f[6], &f[7]) == -1)
		return;
	/* anything a lenient upstream could take for "stream" streams */
	ev->stream = f[1].type != JV_NONE && f[1].type != JV_FALSE &&
	    f[1].type != JV_NULL;
	if (x->key != NULL &&
	    auth_check_body(w, x->key, ev->model, mlen, &v) == -1) {
		pl_refuse(c, &v);
		return;
	}
	x->model = ev->model;
	if ((alias = cfg_alias_for(w->cfg, ev->model, mlen)) != NULL) {
		/* the upstream is asked for the model the alias stands for */
		x->model = alias->model;
		snprintf(x->alias_tok, sizeof(x->alias_tok), "\"%s\"",
		    alias->model);
		proxy_add_edit(&x->px, f[0].start, f[0].end - f[0].start,
		    x->alias_tok);
		route = cfg_route_for(w->cfg, alias->model,
		    strlen(alias->model));
	} else
		route = cfg_route_for(w->cfg, ev->model, mlen);
	if (route == NULL) {
		client_error(c, 404, "invalid_request_error",
		    "model_not_found", "The model `%s` does not exist or you "
		    "do not have access to it.", ev->model);
		return;
	}
	switch (pl_translate(x, route, body, len)) {
	case -1:
		return;
	case 1:
		/* the stage asks an OpenAI upstream for usage itself */
		if (pl_check_azure(c, route, x->model, x->xl->ep) == -1)
			return;
		break;
	default:
		if (pl_check_azure(c, route, x->model, c->r.ep) == -1)
			return;
		if (ev->stream && pl_ask_stream_usage(x, route, body, len,
		    &f[2]) == -1)
			return;
	}
	/*
	 * A hit is answered here, before anything is held: it spends
	 * nothing upstream, so no tpm or budget, not even a used-up one,
	 * refuses it (sluice.conf(5), ANSWER CACHE); rpm was taken above.
	 */
	if (w->cache != NULL) {
		if (acache_begin(&x->ac, c, x->key, route, x->model, body,
		    len) == 1)
			return;
		x->px.fill = acache_fill(&x->ac);
		x->px.cache_hdr = acache_header(&x->ac);
	}
	/* its worst case, held against the key's limits until it ends */
	if (x->key != NULL && auth_hold(w, x->key, cfg_price_for(w->cfg,
	    x->model, strlen(x->model)), (int64_t)(len +
	    USAGE_BYTES_PER_TOKEN - 1) / USAGE_BYTES_PER_TOKEN,
	    pl_output_limit(c, route, body, &f[3], 3), ev->end_user, &x->hold,
	    &v) == -1) {
		pl_refuse(c, &v);
		return;
	}
	if (c->ife != NULL) {	/* a death gives it back (the master) */
		c->ife->hold[0] = x->hold.key;
		c->ife->hold[1] = x->hold.team;
		c->ife->hold[2] = x->hold.user;
	}
	proxy_start(&x->px, route, x->model);
}

/* The usage of an answer from upstream, into the request's event. */
static void
pl_bill(struct client *c, struct proxy *px)
{
	struct exchange		*x = c->hdata;
	struct usage_event	*ev = c->r.ev;
	const struct cfg_price	*price;
	const char		*model;

	/* a 2xx stream that never reported usage is charged an estimate,
	 * and so is an answer whose encoding kept its usage from us */
	if ((ev->stream || px->tap_lost) && ev->status >= 200 &&
	    ev->status < 300 && !px->usage.seen)
		usage_estimate(&px->usage, evbuffer_get_length(c->body));
	/* an alias is billed as the model it stands for */
	model = x->model != NULL ? x->model : ev->model;
	price = cfg_price_for(c->w->cfg, model, strlen(model));
	usage_to_event(&px->usage, price, ev);
	/* billed nothing is not billed $0: NULL, counted, said once */
	if (price == NULL && px->usage.seen)
		meter_unpriced(c->w, model);
	/* numbers from an answer cut short are not the whole bill */
	if (ev->usage_source == USAGE_UPSTREAM && !px->complete)
		ev->usage_source = USAGE_ESTIMATED;
}

/* The request ended (client_finalize): its one event, then the charge. */
static void
pl_finish(struct client *c)
{
	struct exchange		*x = c->hdata;
	struct proxy		*px = &x->px;
	struct request		*r = &c->r;
	struct usage_event	*ev = r->ev;
	int64_t			 now = now_us(), upstream_us = 0;
	int			 hit;

	ev->latency_us = now - r->t_start_us;
	if (px->t_first_byte_us != 0 && px->t_sent_us != 0) {
		ev->ttfb_us = px->t_first_byte_us - px->t_sent_us;
		/* upstream time: from request sent to the end of its answer */
		upstream_us = now - px->t_sent_us;
	} else
		ev->ttfb_us = -1;
	ev->overhead_us = ev->latency_us - upstream_us;
	if (ev->overhead_us < 0)
		ev->overhead_us = 0;
	ev->worker_pid = c->w->pid;
	memcpy(ev->client_addr, c->addr, sizeof(ev->client_addr));
	/* a hit was billed from its entry (cost 0, what it saved) */
	hit = acache_hit(&x->ac);
	if (!hit)
		pl_bill(c, px);
	if (x->ac.state != AC_NONE)
		acache_end(&x->ac, c, px->complete && px->fill != NULL &&
		    !px->tap_lost, px->head_sent && proxy_answer_sse(px), ev);
	/* a death from here on must not push it a second time */
	if (c->ife != NULL)
		inflight_pushing(c->ife, c->w->lane);
	meter_push(c->w, ev, r->ep != NULL ? r->ep->idx :
	    endpoint_find("", 0)->idx, px->up != NULL ? px->up->cnt_idx : -1,
	    ev->stream && px->head_sent);
	/* after the push: the collector's spend sync relies on this order */
	if (!hit)
		auth_charge(c->w, x->key, &x->hold, ev);
	if (c->ife != NULL)	/* given back: not the master's to give */
		memset(c->ife->hold, 0, sizeof(c->ife->hold));
	log_debug("%s \"%.*s %.*s\" %d %lld %lldus %s", c->addr,
	    (int)r->hd.method_len, r->hd.method, (int)r->hd.path_len,
	    r->hd.target, ev->status, (long long)ev->bytes_out,
	    (long long)ev->latency_us, r->reqid);
	proxy_reset(px);
	if (x->xl != NULL)
		xlate_reset(x->xl);
	memset(&x->key, 0, sizeof(*x) - offsetof(struct exchange, key));
}
