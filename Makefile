# SPDX-License-Identifier: GPL-2.0
#
# toa.ko, built out of tree against KDIR (default: the running kernel).
#
#   make                       build toa.ko
#   make CLIPPY=1              ... with clippy as the Rust compiler
#   make install / uninstall   into /lib/modules/<kernel>/updates, with depmod
#   make check                 the test suite (host + VM on both test kernels)
#   make fuzz                  fuzz the parsers for FUZZ_SECONDS each (default 600)
#   make fmt / fmt-check       rustfmt the module's Rust

KDIR ?= /lib/modules/$(shell uname -r)/build
TOA := $(CURDIR)

# The compilers that built KDIR (see scripts/kbuild-env.sh).
kenv = $$($(TOA)/scripts/kbuild-env.sh "$(KDIR)") || exit 1

.PHONY: all modules clean install uninstall check fuzz fmt fmt-check

all: modules

modules:
	+@env=$(kenv); $(MAKE) -C "$(KDIR)" M="$(TOA)" $$env modules

clean:
	+@env=$(kenv); $(MAKE) -C "$(KDIR)" M="$(TOA)" $$env clean

install: modules
	+@env=$(kenv); $(MAKE) -C "$(KDIR)" M="$(TOA)" $$env INSTALL_MOD_DIR=updates modules_install
	depmod -a $$(sed -n 's/^#define UTS_RELEASE "\(.*\)"/\1/p' "$(KDIR)/include/generated/utsrelease.h")

uninstall:
	rm -f /lib/modules/$$(sed -n 's/^#define UTS_RELEASE "\(.*\)"/\1/p' "$(KDIR)/include/generated/utsrelease.h")/updates/toa.ko*
	depmod -a $$(sed -n 's/^#define UTS_RELEASE "\(.*\)"/\1/p' "$(KDIR)/include/generated/utsrelease.h")

check:
	$(TOA)/scripts/check.sh

FUZZ_SECONDS ?= 600
fuzz:
	$(TOA)/scripts/bootstrap.sh
	$(TOA)/scripts/fuzz.sh wire $(FUZZ_SECONDS) --save
	$(TOA)/scripts/fuzz.sh config $(FUZZ_SECONDS) --save

# The crate root pulls in every module file; .rustfmt.toml follows the kernel's.
fmt:
	/usr/bin/rustfmt src/toa_main.rs

fmt-check:
	/usr/bin/rustfmt --check src/toa_main.rs
