/*
 * decode.h - a streaming decoder of an answer's Content-Encoding, for the
 * usage reader only (layer 0, pure over its inputs).
 *
 * Owns: which codings sluice can decode (gzip, deflate, br, zstd), the
 * filter that keeps a client's Accept-Encoding to those, and one decoder
 * whose state is kept for a connection's life and restarted per answer.
 * Called by the proxy, which feeds it a copy of the answer's bytes as
 * they pass to the client and hands what comes out to the usage tap.
 * Never touches the bytes the client gets, never holds a whole answer
 * (output goes to the caller's function DEC_OUT bytes at a time) and
 * never inflates more than the limit given to dec_start: past it, it
 * stops and says so, and the request is estimated.
 *
 * Policy: sluice forwards upstream only the codings it can decode, so
 * that every answer can be metered from its usage object, and it decodes
 * a copy rather than the answer itself, so that the client still gets the
 * compression it asked for and the bytes the upstream sent.
 */
#ifndef SLUICE_DECODE_H
#define SLUICE_DECODE_H

#include <stddef.h>
#include <stdint.h>

enum dec_coding {
	DEC_IDENTITY = 0,
	DEC_GZIP,
	DEC_DEFLATE,		/* zlib-wrapped, or raw as some servers send */
	DEC_BR,
	DEC_ZSTD,
	DEC_UNKNOWN,		/* anything else, or several codings */
};

enum dec_state {
	DEC_RUNNING = 0,	/* more input expected */
	DEC_DONE,		/* the compressed stream ended */
	DEC_ERROR,		/* malformed input, or out of memory */
	DEC_LIMIT,		/* the output passed the limit */
};

#define DEC_OUT		(16 * 1024)	/* output handed over at most at once */

struct decoder {
	enum dec_coding	 coding;
	enum dec_state	 state;
	uint64_t	 out_total;
	uint64_t	 limit;
	unsigned char	 hdr[2];	/* deflate: the first bytes, sniffed */
	unsigned	 nhdr;
	void		*z;		/* z_stream, kept across answers */
	int		 z_live;	/* inflateInit2 succeeded on z */
	void		*br;		/* BrotliDecoderState, per answer */
	void		*zs;		/* ZSTD_DStream, kept across answers */
};

typedef void	 dec_out_fn(void *arg, const char *p, size_t n);

/* The coding named by a Content-Encoding value (absent: identity). */
enum dec_coding	 dec_coding_of(const char *v, size_t n);
/*
 * Start decoding one answer in CODING; at most LIMIT bytes come out.
 * 0, or -1 out of memory (the state is then DEC_ERROR).
 */
int	 dec_start(struct decoder *, enum dec_coding, uint64_t limit);
/* Decode N bytes of P; OUT gets what comes out.  The resulting state. */
enum dec_state	 dec_feed(struct decoder *, const void *p, size_t n,
	    dec_out_fn *out, void *arg);
/* The answer ended: free what is per answer (keep what is reused). */
void	 dec_end(struct decoder *);
void	 dec_free(struct decoder *);

/*
 * Accept-Encoding, filtered: the next element of [*P, END) whose coding
 * sluice decodes (gzip, deflate, br, zstd, identity), with its
 * parameters, trimmed.  1 and *EL, *ELLEN set; 0 at the end.
 */
int	 dec_accept_next(const char **p, const char *end, const char **el,
	    size_t *ellen);

#endif
