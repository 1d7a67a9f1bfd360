/*
 * reply.c - error bodies and local answer heads.
 *
 * Anthropic's error types follow its API's documented status mapping;
 * OpenAI's carry the type and code the caller chose, which is also the
 * usage row's error class.
 */
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "worker/http.h"
#include "worker/reply.h"

void
reply_json_escape(struct evbuffer *b, const char *s)
{
	reply_json_escape_n(b, s, strlen(s));
}

void
reply_json_escape_n(struct evbuffer *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s, *end = s + n;

	for (; s < end; s++) {
		unsigned char	 ch = (unsigned char)*s;
		char		 esc[6] = { '\\', 'u', '0', '0', 0, 0 };

		if (ch != '"' && ch != '\\' && ch >= 0x20)
			continue;
		evbuffer_add(b, run, (size_t)(s - run));
		run = s + 1;
		if (ch == '"' || ch == '\\') {
			esc[1] = (char)ch;
			evbuffer_add(b, esc, 2);
		} else {
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			evbuffer_add(b, esc, 6);
		}
	}
	evbuffer_add(b, run, (size_t)(s - run));
}

const char *
reply_anthropic_type(int status)
{
	switch (status) {
	case 400: case 405: case 408: case 411: case 414: case 431:
		return "invalid_request_error";
	case 401:
		return "authentication_error";
	case 403:
		return "permission_error";
	case 404:
		return "not_found_error";
	case 413:
		return "request_too_large";
	case 429:
		return "rate_limit_error";
	case 529:
		return "overloaded_error";
	default:
		return "api_error";
	}
}

void
reply_error_body(struct evbuffer *b, int anthropic, int status,
    const char *type, const char *code, const char *msg, const char *reqid)
{
	if (anthropic) {
		evbuffer_add_printf(b, "{\"type\":\"error\",\"error\":"
		    "{\"type\":\"%s\",\"message\":\"",
		    reply_anthropic_type(status));
		reply_json_escape(b, msg);
		evbuffer_add_printf(b, "\"},\"request_id\":\"%s\"}\n", reqid);
	} else {
		evbuffer_add(b, "{\"error\":{\"message\":\"", 21);
		reply_json_escape(b, msg);
		evbuffer_add_printf(b, "\",\"type\":\"%s\",\"param\":null,"
		    "\"code\":\"%s\"}}\n", type, code);
	}
}

void
reply_client_id(struct evbuffer *out, const char *client_id)
{
	size_t n = strlen(client_id);

	if (n == 0)
		return;
	evbuffer_add(out, "x-client-request-id: ", 21);
	evbuffer_add(out, client_id, n);
	evbuffer_add(out, "\r\n", 2);
}

void
reply_head(struct evbuffer *out, int status, const char *ctype, size_t len,
    const char *reqid, const char *client_id, int retry_s, int keepalive)
{
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "x-request-id: %s\r\n", status, http_reason(status), ctype, len,
	    reqid);
	reply_client_id(out, client_id);
	if (retry_s > 0)
		evbuffer_add_printf(out, "Retry-After: %d\r\n", retry_s);
	evbuffer_add_printf(out, "%s\r\n",
	    keepalive ? "" : "Connection: close\r\n");
}
