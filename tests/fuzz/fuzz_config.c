/*
 * fuzz_config.c - libFuzzer target: the sluice.conf and keys.conf parsers
 * (the same grammar), fed through a real file as sluiced reads them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/config.h"
#include "common/keys.h"
#include "common/log.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char	 path[64];
	struct config	*cfg;
	struct keyring	*kr;
	char		 err[1024];
	FILE		*f;

	if (path[0] == '\0') {
		int fd;

		log_init("/dev/null", LOGL_WARN);
		snprintf(path, sizeof(path), "/tmp/fuzz-conf-XXXXXX");
		if ((fd = mkstemp(path)) == -1)
			abort();
		close(fd);
	}
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	if (cfg_load(path, &cfg, err, sizeof(err)) == 0)
		cfg_free(cfg);
	if (keys_load(path, &kr, err, sizeof(err)) == 0)
		keys_free(kr);
	return 0;
}
