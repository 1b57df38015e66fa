# SPDX-License-Identifier: GPL-2.0
#
# toa.ko, built out of tree against KDIR (default: the running kernel).
#
#   make                       build toa.ko
#   make CLIPPY=1              ... with clippy as the Rust compiler
#   make install / uninstall   into /lib/modules/<kernel>/updates, with depmod
#                              (INSTALL_MOD_PATH=dir stages under dir instead)
#   make dkms-install          register with DKMS and build for KDIR's kernel
#   make dkms-uninstall        remove from DKMS
#   make check                 the test suite (host + VM on both test kernels)
#   make fuzz                  fuzz the parsers for FUZZ_SECONDS each (default 600)
#   make bench                 measure toa's cost in a VM (docs/performance.md)
#   make run                   the end-to-end demo in a VM
#   make fmt / fmt-check       rustfmt the module's Rust

KDIR ?= /lib/modules/$(shell uname -r)/build
TOA := $(CURDIR)

# The compilers that built KDIR (see scripts/kbuild-env.sh).
kenv = $$($(TOA)/scripts/kbuild-env.sh "$(KDIR)") || exit 1

.PHONY: all modules clean install uninstall dkms-src dkms-install dkms-uninstall run check bench fuzz fmt fmt-check

all: modules

modules:
	+@env=$(kenv); $(MAKE) -C "$(KDIR)" M="$(TOA)" $$env modules

clean:
	+@env=$(kenv); $(MAKE) -C "$(KDIR)" M="$(TOA)" $$env clean

# The kernel release KDIR was built for.
krelease = $$(sed -n 's/^\#define UTS_RELEASE "\(.*\)"/\1/p' "$(KDIR)/include/generated/utsrelease.h")

install: modules
	+@env=$(kenv); $(MAKE) -C "$(KDIR)" M="$(TOA)" $$env INSTALL_MOD_DIR=updates modules_install
	depmod $(if $(INSTALL_MOD_PATH),-b "$(INSTALL_MOD_PATH)") -a $(krelease)

uninstall:
	rm -f "$(INSTALL_MOD_PATH)/lib/modules/$(krelease)/updates/toa.ko"*
	depmod $(if $(INSTALL_MOD_PATH),-b "$(INSTALL_MOD_PATH)") -a $(krelease)

# DKMS. DKMS_SRC is where the module's sources are staged (DKMS's source
# tree); DKMS_FLAGS passes e.g. --dkmstree/--installtree for a private tree.
TOA_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' $(TOA)/dkms.conf)
DKMS_SRC ?= /usr/src
DKMS_FLAGS ?=
dkms-src:
	rm -rf "$(DKMS_SRC)/toa-$(TOA_VERSION)" && mkdir -p "$(DKMS_SRC)/toa-$(TOA_VERSION)/scripts"
	cp -a Kbuild Makefile dkms.conf src include "$(DKMS_SRC)/toa-$(TOA_VERSION)/"
	cp -a scripts/kbuild-env.sh "$(DKMS_SRC)/toa-$(TOA_VERSION)/scripts/"

dkms-install: dkms-src
	dkms add $(DKMS_FLAGS) --sourcetree "$(DKMS_SRC)" toa/$(TOA_VERSION)
	dkms install $(DKMS_FLAGS) --sourcetree "$(DKMS_SRC)" toa/$(TOA_VERSION) -k $(krelease) --kernelsourcedir "$(KDIR)"

dkms-uninstall:
	dkms remove $(DKMS_FLAGS) --sourcetree "$(DKMS_SRC)" toa/$(TOA_VERSION) --all

# The end-to-end demo (FULLNAT topology, nginx and Python) in a VM.
run:
	$(TOA)/scripts/demo.sh

check:
	$(TOA)/scripts/check.sh

bench:
	$(TOA)/scripts/bench.sh

FUZZ_SECONDS ?= 600
fuzz:
	$(TOA)/scripts/bootstrap.sh
	$(TOA)/scripts/fuzz.sh wire $(FUZZ_SECONDS) --save
	$(TOA)/scripts/fuzz.sh config $(FUZZ_SECONDS) --save
	$(TOA)/scripts/fuzz.sh udp $(FUZZ_SECONDS) --save

# The crate root pulls in every module file; .rustfmt.toml follows the kernel's.
fmt:
	/usr/bin/rustfmt src/toa_main.rs

fmt-check:
	/usr/bin/rustfmt --check src/toa_main.rs
