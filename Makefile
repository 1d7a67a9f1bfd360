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
	   openssl curl mandoc

MAINS	 = master/sluiced.c master/sluicectl.c
LIB_SRCS = $(filter-out $(MAINS),$(wildcard common/*.c shm/*.c worker/*.c sql/*.c master/*.c))
LIB_OBJS = $(LIB_SRCS:%.c=$(B)/obj/%.o)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)
UNIT_BINS = $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

.PHONY: all deps check unit integration run bench clean install uninstall

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
	$(MAKE) unit integration

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
