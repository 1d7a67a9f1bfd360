# sluice - the only entry point: build, check, run, bench, install.

PREFIX	?= /usr/local
DESTDIR	?=
CC	?= cc
OPT	?= -O2
CFLAGS	?= $(OPT) -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
	   -fno-strict-aliasing -I. -I/usr/include/postgresql
LDLIBS	 = -levent_openssl -levent_extra -levent_core -lssl -lcrypto -lpq -lz -lbrotlidec -lzstd -lm

ifeq ($(SAN),1)
CFLAGS	+= -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
LDFLAGS	+= -fsanitize=address,undefined
B	 = build/san
else
B	 = build
endif

PYTHON	 = /usr/bin/python3

# Debian packages the build, the tests and `make run` need.
DEB_PKGS = build-essential pkg-config libevent-dev libssl-dev libpq-dev \
	   libjsmn-dev libcmocka-dev postgresql python3-pytest python3-psycopg \
	   openssl curl mandoc clang libclang-rt-14-dev wrk nginx-light haproxy \
	   zlib1g-dev libbrotli-dev libzstd-dev python3-brotli python3-zstandard \
	   python3-botocore python3-jwt python3-cryptography \
	   valgrind

MAINS	 = master/sluiced.c master/sluicectl.c
LIB_SRCS = $(filter-out $(MAINS),$(wildcard common/*.c shm/*.c worker/*.c sql/*.c master/*.c))
LIB_OBJS = $(LIB_SRCS:%.c=$(B)/obj/%.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

.PHONY: all deps check layers unit integration run bench clean install uninstall \
	fuzz fuzz-build soak bench-ring bench-counters perf-guard perf-guard-update \
	bench-tls bench-cloud bench-shared

all: $(B)/sluiced $(B)/sluicectl $(B)/mockllm

$(B)/obj/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libsluice.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/sluiced: $(B)/obj/master/sluiced.o $(B)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/sluicectl: $(B)/obj/master/sluicectl.o $(B)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/mockllm: $(B)/obj/bench/mockllm.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the decoder's test compresses its inputs itself
$(B)/tests/test_decode: LDLIBS += -lbrotlienc

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(B)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# Install what is missing, and only that: dpkg -s decides.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# promtool, from Debian's prometheus package, unpacked and not installed:
# installing it would start a Prometheus server on :9090.
PROMTOOL = build/tools/usr/bin/promtool
$(PROMTOOL):
	@mkdir -p build/tools
	cd build/tools && rm -f prometheus_*.deb && \
	    { apt-get download prometheus 2>/dev/null || \
	      { apt-get update -qq && apt-get download prometheus; }; } && \
	    dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb
	@test -x $@

check: deps
	$(MAKE) layers
	$(MAKE) all $(UNIT_BINS) $(PROMTOOL)
	$(MAKE) unit
	$(MAKE) man-lint
	$(MAKE) fuzz FUZZ_SECONDS=3
	$(MAKE) integration
	$(if $(filter 1,$(SAN)),@echo "perf-guard: not run with SAN=1 (ASan does not run under valgrind)",$(MAKE) perf-guard)

# Calls go downward: no include of a higher layer's header, no circle
# (the layer of every module is written in tests/layers.conf).
layers:
	$(PYTHON) tests/check_layers.py

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

integration: all
	SLUICE_BUILD=$(CURDIR)/$(B) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

run: deps
	$(MAKE) all
	./etc/run.sh $(B)

# The request path's cost: instructions per request of one worker under
# callgrind against bench/perf-guard.json (fails above +5 %).  The
# baseline records the toolchain and flags; -update rewrites it (README:
# the performance guard says when that is legitimate).
PERF_GUARD = CC="$(CC)" SLUICE_CFLAGS="$(CFLAGS)" SLUICE_LDFLAGS="$(LDFLAGS)" \
	     $(PYTHON) bench/perf_guard.py --build $(B)

perf-guard: all
	$(PERF_GUARD)

perf-guard-update: all
	$(PERF_GUARD) --update

# bench/: sluice against mockllm direct, nginx and haproxy, one run, ratios
# (about 10 minutes).  QUICK=1: the 1 KB cells at 1 and 10 clients, the
# compressed answers and the spread cells, about 2 minutes (SIZES=1KB,100KB
# for more sizes).  The Debian tools are installed if missing.
BENCH_PKGS = wrk nginx-light haproxy

$(B)/streamload: bench/streamload.c
	$(CC) $(CFLAGS) -o $@ bench/streamload.c

$(B)/ringbench: $(B)/obj/bench/ringbench.o $(B)/libsluice.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The live counters' cost: sluiced with them and with them compiled out.
bench-counters: all
	$(MAKE) B=build/nocnt OPT="$(OPT) -DSLUICE_NO_COUNTERS" build/nocnt/sluiced
	$(PYTHON) bench/counters_ab.py --build $(B) --nocnt build/nocnt

# The metering path alone: push cost, and ring -> PostgreSQL rows/s and
# PostgreSQL's CPU per row (fsync on, as in production), into an empty
# usage_events and into one that holds RING_FILL rows.
RING_FILL ?= 20000000
bench-ring: deps
	$(MAKE) all $(B)/ringbench
	@d=$$(mktemp -d /tmp/sluice-ringbench-XXXXXX); chmod 755 $$d; \
	ci=$$(etc/pg.sh start $$d/pg 2>/dev/null) || exit 1; \
	./$(B)/sluicectl -h >/dev/null 2>&1; \
	$(B)/ringbench -n 200000 -p 2 -b 1000 -f $(RING_FILL) -r 3 "$$ci"; \
	r1=$$?; etc/pg.sh stop $$d/pg >/dev/null 2>&1; rm -rf $$d; \
	[ $$r1 = 0 ]

# 200,000 mixed requests; private RSS of every worker must stay flat.
soak: deps
	$(MAKE) all
	SLUICE_BUILD=$(CURDIR)/$(B) $(PYTHON) bench/soak.py $(SOAK_ARGS)

bench: all $(B)/streamload
	@for p in $(BENCH_PKGS); do dpkg -s $$p >/dev/null 2>&1 && continue; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$p || \
		{ $$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$p; } \
		|| exit 1; done
	$(PYTHON) bench/run.py --build $(B) $(if $(filter 1,$(QUICK)),--quick) \
	    $(if $(SIZES),--sizes $(SIZES))
	$(PYTHON) bench/tls_bench.py --build $(B) \
	    $(if $(filter 1,$(QUICK)),--quick) $(TLS_BENCH_ARGS)
	$(PYTHON) bench/cloud_cost.py --build $(B) $(if $(filter 1,$(QUICK)),-n 30 -t 3)
	$(PYTHON) bench/shared_limits.py --build $(B) \
	    $(if $(filter 1,$(QUICK)),--cost-only)

# A signed Bedrock request next to the same one to an Anthropic upstream,
# 1 KB and 100 KB: instructions (callgrind) and CPU time (schedstat).
bench-cloud: all
	$(PYTHON) bench/cloud_cost.py --build $(B)

# limits shared against local (CPU per request, c=10, 1 KB), and three
# hosts sharing one rpm limit for a minute: admitted against the limit.
bench-shared: all
	$(PYTHON) bench/shared_limits.py --build $(B)

# HTTPS on the client side: sluice next to nginx with the same certificate,
# keep-alive requests/s and full handshakes/s, CPU per request (schedstat).
# TLS_BENCH_ARGS=--quick for 2 s a run, --key rsa for an RSA certificate.
bench-tls: all
	@for p in $(BENCH_PKGS); do dpkg -s $$p >/dev/null 2>&1 && continue; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$p || \
		exit 1; done
	$(PYTHON) bench/tls_bench.py --build $(B) $(TLS_BENCH_ARGS)

clean:
	rm -rf build run

# make install: the binaries, the man pages, and the sample configuration
# in SYSCONFDIR/sluice, where a file already there is never overwritten.
# The init script, systemd unit and logrotate snippet go to SHAREDIR with
# this install's paths, for the operator to copy into place.  uninstall
# removes all of it but configuration files that were changed.
SYSCONFDIR ?= $(PREFIX)/etc
SBINDIR	?= $(PREFIX)/sbin
BINDIR	?= $(PREFIX)/bin
MANDIR	?= $(PREFIX)/share/man
SHAREDIR ?= $(PREFIX)/share/sluice
MAN8	 = man/sluiced.8 man/sluicectl.8
MAN5	 = man/sluice.conf.5
# installed-name:source:mode
SAMPLES	 = sluice.conf:etc/sluice.conf.example:644 \
	   keys.conf:etc/keys.conf.example:640
OPSFILES = sluiced.init:etc/init.d/sluiced:755 \
	   sluiced.service:etc/sluiced.service:644 \
	   sluice.logrotate:etc/logrotate.d/sluice:644
OPS_SED	 = -e 's|/usr/local/sbin|$(SBINDIR)|g' \
	   -e 's|/usr/local/etc|$(SYSCONFDIR)|g'

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(SYSCONFDIR)/sluice $(DESTDIR)$(SHAREDIR)
	install -m 755 $(B)/sluiced $(DESTDIR)$(SBINDIR)/sluiced
	install -m 755 $(B)/sluicectl $(DESTDIR)$(BINDIR)/sluicectl
	install -m 644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	@for s in $(OPSFILES); do IFS=:; set -- $$s; unset IFS; \
		sed $(OPS_SED) $$2 > $(DESTDIR)$(SHAREDIR)/$$1 && \
		chmod $$3 $(DESTDIR)$(SHAREDIR)/$$1 || exit 1; done
	@for s in $(SAMPLES); do IFS=:; set -- $$s; unset IFS; \
		d=$(DESTDIR)$(SYSCONFDIR)/sluice/$$1; \
		if [ -e $$d ]; then echo "keeping $$d"; \
		else install -m $$3 $$2 $$d || exit 1; fi; done

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/sluiced $(DESTDIR)$(BINDIR)/sluicectl \
	    $(MAN8:man/%=$(DESTDIR)$(MANDIR)/man8/%) \
	    $(MAN5:man/%=$(DESTDIR)$(MANDIR)/man5/%)
	@for s in $(OPSFILES); do rm -f $(DESTDIR)$(SHAREDIR)/$${s%%:*}; done
	@for s in $(SAMPLES); do IFS=:; set -- $$s; unset IFS; \
		d=$(DESTDIR)$(SYSCONFDIR)/sluice/$$1; [ -e $$d ] || continue; \
		if cmp -s $$2 $$d; then rm -f $$d; \
		else echo "keeping $$d: it was changed"; fi; done
	-@rmdir $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(SYSCONFDIR)/sluice 2>/dev/null

# The man pages must be clean under Debian's mandoc, warnings included.
.PHONY: man-lint
man-lint:
	mandoc -Tlint -W warning $(MAN8) $(MAN5)

# libFuzzer targets (tests/fuzz): `make fuzz FUZZ_SECONDS=1800` runs each
# for that long; `make check` runs each for a few seconds so they keep
# building and the seed corpus keeps passing.
FUZZ_CC		 = clang
FUZZ_CFLAGS	 = -g -O1 -fsanitize=fuzzer,address,undefined \
		   -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE \
		   -I. -I/usr/include/postgresql
FUZZ_SECONDS	?= 10
FUZZ_TARGETS	 = http usage decode config json copyrow strict strict_portable \
		   xlate_oa xlate_an evstream
FUZZ_SRC_http	 = worker/http.c
FUZZ_SRC_usage	 = worker/usage.c common/json.c common/json_scan.c \
		   common/log.c
FUZZ_SRC_decode	 = worker/decode.c worker/usage.c common/json.c \
		   common/json_scan.c common/log.c
FUZZ_LIBS_decode = -lbrotlienc
FUZZ_SRC_json	 = common/json_scan.c common/json.c
FUZZ_SRC_copyrow = sql/copyrow.c
FUZZ_SRC_strict	 = common/json_strict.c common/json.c
FUZZ_SRC_strict_portable = common/json.c
FUZZ_SRC_config	 = common/config.c common/confparse.c common/keys.c common/awscred.c \
		   common/json.c \
		   common/glob.c common/log.c
FUZZ_SRC_xlate	 = worker/xlate_req.c worker/xlate_resp.c worker/xlate_sse.c \
		   worker/xlate_json.c worker/xlate_map.c worker/usage.c \
		   worker/reply.c worker/http.c common/json.c \
		   common/json_scan.c common/json_strict.c common/log.c
FUZZ_SRC_xlate_oa = $(FUZZ_SRC_xlate)
FUZZ_SRC_xlate_an = $(FUZZ_SRC_xlate)
FUZZ_SRC_evstream = worker/evstream.c common/base64.c

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard */*.h) $(wildcard */*.c)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) $(LDLIBS) \
	    $(FUZZ_LIBS_$*)

fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus-$$t || exit 1; \
		echo "== fuzz_$$t for $(FUZZ_SECONDS)s"; \
		build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) \
		    -print_final_stats=1 -close_fd_mask=3 \
		    -artifact_prefix=build/fuzz/ \
		    build/fuzz/corpus-$$t tests/fuzz/corpus/$$t \
		    2>build/fuzz/fuzz_$$t.log || \
		    { tail -n 40 build/fuzz/fuzz_$$t.log; exit 1; }; \
		grep -E '^stat::number_of_executed_units' build/fuzz/fuzz_$$t.log; \
	done
