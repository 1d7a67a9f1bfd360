# sluice - the only entry point: build, check, run, bench, install.

PREFIX	?= /usr/local
DESTDIR	?=
CC	?= cc
OPT	?= -O2
CFLAGS	?= $(OPT) -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
	   -fno-strict-aliasing -I. -I/usr/include/postgresql
LDLIBS	 = -levent_openssl -levent_extra -levent_core -lssl -lcrypto -lpq -lm

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
	   openssl curl mandoc clang libclang-rt-14-dev

MAINS	 = master/sluiced.c master/sluicectl.c
LIB_SRCS = $(filter-out $(MAINS),$(wildcard common/*.c shm/*.c worker/*.c sql/*.c master/*.c))
LIB_OBJS = $(LIB_SRCS:%.c=$(B)/obj/%.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

.PHONY: all deps check unit integration run bench clean install uninstall \
	fuzz fuzz-build

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

check: deps
	$(MAKE) all $(UNIT_BINS)
	$(MAKE) unit
	$(MAKE) fuzz FUZZ_SECONDS=3
	$(MAKE) integration

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

integration: all
	SLUICE_BUILD=$(CURDIR)/$(B) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

run: deps
	$(MAKE) all
	./etc/run.sh $(B)

# bench/: sluice against mockllm direct and against nginx, one run, ratios.
# QUICK=1: the 1 KB, c=10 subset.  The Debian tools are installed if missing.
BENCH_PKGS = wrk nginx-light

$(B)/streamload: bench/streamload.c
	$(CC) $(CFLAGS) -o $@ bench/streamload.c

bench: all $(B)/streamload
	@for p in $(BENCH_PKGS); do dpkg -s $$p >/dev/null 2>&1 && continue; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$p || \
		{ $$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $$p; } \
		|| exit 1; done
	$(PYTHON) bench/run.py --build $(B) $(if $(filter 1,$(QUICK)),--quick)

clean:
	rm -rf build run

# libFuzzer targets (tests/fuzz): `make fuzz FUZZ_SECONDS=1800` runs each
# for that long; `make check` runs each for a few seconds so they keep
# building and the seed corpus keeps passing.
FUZZ_CC		 = clang
FUZZ_CFLAGS	 = -g -O1 -fsanitize=fuzzer,address,undefined \
		   -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE \
		   -I. -I/usr/include/postgresql
FUZZ_SECONDS	?= 10
FUZZ_TARGETS	 = http usage config
FUZZ_SRC_http	 = worker/http.c
FUZZ_SRC_usage	 = worker/usage.c common/json.c common/log.c
FUZZ_SRC_config	 = common/config.c common/confparse.c common/keys.c \
		   common/glob.c common/log.c

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard */*.h) $(wildcard */*.c)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) $(LDLIBS)

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
