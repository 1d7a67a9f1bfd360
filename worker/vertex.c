/*
 * vertex.c - Anthropic's Messages API as Vertex AI serves it: the model
 * in the path, the version in the body, the answers unchanged.
 */
#include <stdio.h>
#include <string.h>

#include "worker/bedrock.h"
#include "worker/sigv4.h"
#include "worker/vertex.h"

size_t
vertex_target(const struct cfg_upstream *u, const char *model, int stream,
    char *out, size_t cap)
{
	const char	*id = cfg_deployment_for(u, model);
	char		 enc[3 * 128 + 1];
	size_t		 n = strlen(id);
	int		 len;

	if (n > 128)
		n = 128;	/* no model name is; Vertex answers 404 */
	/* '@' (claude-3-5-sonnet-v2@20241022) is sent as is, as Google's
	 * SDKs do; anything else outside the unreserved set is encoded */
	{
		size_t	 i, o = 0;

		for (i = 0; i < n; i++)
			if (id[i] == '@')
				enc[o++] = '@';
			else
				o += sigv4_uri_encode(id + i, 1, 0, enc + o);
		enc[o] = '\0';
	}
	len = snprintf(out, cap, "/v1/projects/%s/locations/%s/publishers/"
	    "anthropic/models/%s:%s", u->gcp_project, u->region, enc,
	    stream ? "streamRawPredict" : "rawPredict");
	return len < 0 || (size_t)len >= cap ? 0 : (size_t)len;
}

int
vertex_body(const char *body, size_t len, struct evbuffer *out)
{
	return bedrock_body_edit(body, len, VERTEX_VERSION, 0, out);
}
