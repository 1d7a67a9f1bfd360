/*
 * acache.c - the answer cache stage.
 *
 * Safety first: an answer is found only by the SHA-256 of everything
 * that decides it (endpoint, upstream format and model, the headers that
 * change Anthropic's answer, the exact body bytes) and of the caller's
 * namespace, which is the key's own name unless the key (or its team)
 * opts into a shared one with cache_scope.  So one key never reads
 * another's answer by default, and a hit answers exactly the request
 * that was asked before.
 *
 * An entry is a struct acache_meta (the answer's usage, filled in at the
 * end) followed by the body as the client received it: a JSON answer, or
 * the events of a stream, which a hit replays in one piece.  The bytes
 * reach the entry straight from the proxy's relay (cache_put_append), so
 * a miss costs one copy and never a second read of the upstream's bytes.
 *
 * A hit is answered with the entry copied once, into space reserved in
 * the client's output, and kept only if the entry did not change during
 * the copy (cache_get_still); otherwise it is a miss like any other.
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
/*
 * SHA256_Init and its kin are deprecated in OpenSSL 3.0 for EVP, which is
 * slower here (acache_key says why): ask for the 1.1.1 API.
 */
#define OPENSSL_API_COMPAT 0x10101000L
#include <openssl/sha.h>

#include "common/clock.h"
#include "common/log.h"
#include "worker/acache.h"
#include "worker/http.h"
#include "worker/reply.h"

#define ACACHE_MAGIC	0x61633031u	/* "ac01" */
#define HEAD_MAX	512

/* What an entry says besides its body: the answer's bill. */
struct acache_meta {
	uint32_t	 magic;
	uint8_t		 sse;
	uint8_t		 usage_source;
	int64_t		 n[7];		/* the event's fields in usage_fields */
	char		 served_model[EV_MODEL_MAX];
};

/* The numbers of the bill, as the event names them; cost is the last. */
static const size_t usage_fields[7] = {
	offsetof(struct usage_event, prompt_tokens),
	offsetof(struct usage_event, completion_tokens),
	offsetof(struct usage_event, cached_tokens),
	offsetof(struct usage_event, cache_write_5m_tokens),
	offsetof(struct usage_event, cache_write_1h_tokens),
	offsetof(struct usage_event, reasoning_tokens),
	offsetof(struct usage_event, cost_micro_usd),
};
#define COST	6

static int64_t *
ev_field(struct usage_event *ev, int i)
{
	return (int64_t *)(void *)((char *)ev + usage_fields[i]);
}

static const char *const cached_paths[] = {
	"/v1/chat/completions", "/v1/completions", "/v1/embeddings",
	"/v1/responses", "/v1/messages",
};

static int
acache_endpoint_ok(const struct endpoint *ep)
{
	size_t	 i;

	for (i = 0; i < sizeof(cached_paths) / sizeof(cached_paths[0]); i++)
		if (strcmp(ep->path, cached_paths[i]) == 0)
			return 1;
	return 0;
}

/* 1 if the header value V (N bytes) lists the directive D. */
static int
acache_directive(const char *v, size_t n, const char *d)
{
	size_t	 dl = strlen(d), i = 0, s;

	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t' &&
		    v[i] != '=')
			i++;
		if (i - s == dl && strncasecmp(v + s, d, dl) == 0)
			return 1;
		while (i < n && v[i] != ',')
			i++;
	}
	return 0;
}

static void
acache_hash_add(SHA256_CTX *md, const char *s, size_t n)
{
	SHA256_Update(md, s, n);
	SHA256_Update(md, "", 1);	/* a separator no field can forge */
}

static void
acache_hash_header(SHA256_CTX *md, const struct http_head *hd,
    const char *name)
{
	const struct http_header *h = http_find(hd, name);

	if (h != NULL)
		acache_hash_add(md, h->value, h->value_len);
	else
		acache_hash_add(md, "-", 1);
}

/*
 * The namespace of KEY's answers into MD: "anonymous" (no keys_file: one
 * caller), "global", "team NAME" or "key NAME", as one field.
 */
static void
acache_hash_namespace(SHA256_CTX *md, const struct keyring *kr,
    const struct key_entry *key)
{
	const struct key_entry		*team;
	enum key_cache_scope		 scope;
	const char			*kind, *name;

	if (key == NULL) {
		acache_hash_add(md, "anonymous", 9);
		return;
	}
	team = keys_team(kr, key);
	scope = key->cache_scope;
	if (scope == KEY_SCOPE_UNSET && team != NULL)
		scope = team->cache_scope;
	if (scope == KEY_SCOPE_GLOBAL) {
		acache_hash_add(md, "global", 6);
		return;
	}
	if (scope == KEY_SCOPE_TEAM && team != NULL) {
		kind = "team ";
		name = team->name;
	} else {
		kind = "key ";
		name = key->name;
	}
	SHA256_Update(md, kind, strlen(kind));
	acache_hash_add(md, name, strlen(name));
}

/*
 * The low-level SHA-256 and not EVP: in a worker between requests, with
 * its caches cold, EVP_DigestInit_ex alone took 1.5 us (it frees and
 * makes the provider's context again) and each EVP_DigestUpdate of a
 * small field 60 ns, against 1.3 us for the body itself; SHA256_Update
 * runs the same SHA-NI code with none of that.
 */
static void
acache_key(struct client *c, const struct key_entry *key,
    const char *model, const char *body, size_t len, uint8_t *out)
{
	const struct request	*r = &c->r;
	SHA256_CTX		 md;
	uint64_t		 blen = len;

	SHA256_Init(&md);
	acache_hash_add(&md, "sluice answer 1", 15);
	acache_hash_namespace(&md, c->w->cfg->keys, key);
	acache_hash_add(&md, r->ep->path, strlen(r->ep->path));
	acache_hash_add(&md, r->ev->upstream_format,
	    strlen(r->ev->upstream_format));
	acache_hash_add(&md, model, strlen(model));
	acache_hash_header(&md, &r->hd, "anthropic-version");
	acache_hash_header(&md, &r->hd, "anthropic-beta");
	SHA256_Update(&md, &blen, sizeof(blen));
	SHA256_Update(&md, body, len);
	SHA256_Final(out, &md);
}

/* Cache on for this request: the route's and the key's (or team's). */
static int
acache_enabled(const struct config *cfg, const struct key_entry *key,
    const struct cfg_route *route)
{
	const struct key_entry	*team;
	enum key_cache		 on = KEY_CACHE_UNSET;

	if (!route->cache)
		return 0;
	if (key != NULL) {
		on = key->cache;
		if (on == KEY_CACHE_UNSET &&
		    (team = keys_team(cfg->keys, key)) != NULL)
			on = team->cache;
	}
	return on != KEY_CACHE_OFF;
}

/* The request's event, billed as the stored answer was, at cost 0. */
static void
acache_bill(struct usage_event *ev, const struct acache_meta *m)
{
	int	 i;

	ev->cache_hit = 1;
	ev->usage_source = m->usage_source;
	for (i = 0; i < COST; i++)
		*ev_field(ev, i) = m->n[i];
	/* unpriced stays unknown (NULL), priced is billed nothing */
	ev->cost_micro_usd = m->n[COST] < 0 ? -1 : 0;
	ev->cost_saved_micro_usd = m->n[COST];
	memcpy(ev->served_model, m->served_model, sizeof(ev->served_model));
	ev->served_model[sizeof(ev->served_model) - 1] = '\0';
	ev->ttfb_us = -1;
}

/*
 * The head of a hit written at HEAD (HEAD_MAX bytes, which the longest
 * head fits); its length.  The client's own request id is echoed, as on a live
 * answer.
 */
_Static_assert(HEAD_MAX >= sizeof("HTTP/1.1 200 OK\r\nContent-Type: "
    "text/event-stream\r\nContent-Length: 18446744073709551615\r\n"
    "x-request-id: \r\nx-client-request-id: \r\nx-sluice-cache: hit\r\n"
    "Connection: close\r\n\r\n") + sizeof(((struct request *)0)->reqid) +
    EV_CLIENT_ID_MAX, "the longest head of a hit fits HEAD_MAX");

static size_t
acache_head(char *head, const struct request *r, int sse, size_t blen)
{
	const char	*cid = r->ev->client_request_id;
	size_t		 cl = strnlen(cid, sizeof(r->ev->client_request_id));
	char		*q = head;

	q = reply_put_lit(q, "HTTP/1.1 200 OK\r\nContent-Type: ");
	if (sse)
		q = reply_put_lit(q, "text/event-stream");
	else
		q = reply_put_lit(q, "application/json");
	q = reply_put_lit(q, "\r\nContent-Length: ");
	q = reply_put_u64(q, blen);
	q = reply_put_lit(q, "\r\nx-request-id: ");
	q = reply_put(q, r->reqid, strnlen(r->reqid, sizeof(r->reqid)));
	if (cl > 0) {
		q = reply_put_lit(q, "\r\nx-client-request-id: ");
		q = reply_put(q, cid, cl);
	}
	q = reply_put_lit(q, "\r\nx-sluice-cache: hit\r\n");
	if (!r->keepalive)
		q = reply_put_lit(q, "Connection: close\r\n");
	q = reply_put_lit(q, "\r\n");
	return (size_t)(q - head);
}

/*
 * Answer from the entry V: head and body into one extent reserved in the
 * client's output, committed only if V is still the entry.  1 answered,
 * 0 the entry changed under us (nothing written).
 */
static int
acache_answer(struct client *c, const struct cache_view *v)
{
	struct evbuffer		*out = client_output(c);
	struct request		*r = &c->r;
	struct evbuffer_iovec	 vec;
	struct acache_meta	 m;
	size_t			 blen, hlen;

	if (v->len < sizeof(m))
		return 0;
	memcpy(&m, v->data, sizeof(m));
	if (m.magic != ACACHE_MAGIC)
		return 0;
	blen = v->len - sizeof(m);
	if (c->w->stopping)
		r->keepalive = 0;
	/* the head is written in place, at most HEAD_MAX of the extent */
	if (evbuffer_reserve_space(out, (ev_ssize_t)(HEAD_MAX + blen), &vec,
	    1) != 1)
		return 0;
	hlen = acache_head(vec.iov_base, r, m.sse, blen);
	memcpy((char *)vec.iov_base + hlen, v->data + sizeof(m), blen);
	if (!cache_get_still(v))
		return 0;	/* never committed: nothing went out */
	vec.iov_len = (size_t)hlen + blen;
	if (evbuffer_commit_space(out, &vec, 1) == -1)
		return 0;
	acache_bill(r->ev, &m);
	r->ev->bytes_out += (int64_t)(hlen + blen);
	r->ev->status = 200;
	return 1;
}

int
acache_begin(struct acache_req *ac, struct client *c,
    const struct key_entry *key, const struct cfg_route *route,
    const char *model, const char *body, size_t len)
{
	struct worker			*w = c->w;
	const struct http_header	*cc;
	struct cache_view		 v;
	uint8_t				 k[CACHE_KEY_LEN];
	int				 fetch = 1;

	if (w->cache == NULL || !acache_endpoint_ok(c->r.ep))
		return 0;
	ac->storing = 0;	/* the put is filled only when storing */
	ac->state = AC_BYPASS;
	if (!acache_enabled(w->cfg, key, route))
		return 0;
	if ((cc = http_find(&c->r.hd, "cache-control")) != NULL) {
		if (acache_directive(cc->value, cc->value_len, "no-store"))
			return 0;
		fetch = !acache_directive(cc->value, cc->value_len,
		    "no-cache");
	}
	ac->state = AC_MISS;
	acache_key(c, key, model, body, len, k);
	if (fetch && cache_get(w->cache, k, now_us(), &v) == 1) {
		if (acache_answer(c, &v)) {
			cache_count_hit(w->cache);
			ac->state = AC_HIT;
			client_answered(c);
			return 1;
		}
		cache_count_miss(w->cache);
	}
	/* a slot only once the answer's first bytes are relayed: one that
	 * is not kept (not 200, compressed) never evicts a live entry */
	cache_put_defer(w->cache, k, key != NULL ? key->name : "", w->pid,
	    now_us(), sizeof(struct acache_meta), &ac->put);
	ac->storing = 1;
	return 0;
}

struct cache_put *
acache_fill(struct acache_req *ac)
{
	return ac->storing ? &ac->put : NULL;
}

const char *
acache_header(const struct acache_req *ac)
{
	switch (ac->state) {
	case AC_BYPASS:
		return "x-sluice-cache: bypass\r\n";
	case AC_MISS:
		return "x-sluice-cache: miss\r\n";
	default:
		return NULL;
	}
}

void
acache_end(struct acache_req *ac, struct client *c, int ok, int sse,
    const struct usage_event *ev)
{
	struct acache_meta	*m;
	int			 i;

	ac->state = AC_NONE;
	if (!ac->storing)
		return;
	ac->storing = 0;
	if (!ok || ev->status != 200 || ev->error_class[0] != '\0' ||
	    (m = cache_put_bytes(&ac->put)) == NULL) {
		cache_put_abort(&ac->put);
		return;
	}
	/* the entry is ours until committed: its header is patched here */
	m->magic = ACACHE_MAGIC;
	m->sse = (uint8_t)(sse != 0);
	m->usage_source = ev->usage_source;
	for (i = 0; i <= COST; i++)
		memcpy(&m->n[i], (const char *)ev + usage_fields[i],
		    sizeof(m->n[i]));
	memcpy(m->served_model, ev->served_model, sizeof(m->served_model));
	if (cache_put_commit(&ac->put, now_us() +
	    (int64_t)c->w->cfg->cache_ttl_ms * 1000) == -1)
		log_debug("request %s: answer not cached (over "
		    "cache_max_entry, or flushed meanwhile)", c->r.reqid);
}
