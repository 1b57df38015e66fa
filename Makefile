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
#   make deb                   dist/toa-dkms_<version>_all.deb (Debian's tooling)
#   make check                 the test suite (host, VMs on the test kernels and
#                              on Debian's stock kernels with the .deb)
#   make fuzz                  fuzz the parsers for FUZZ_SECONDS each (default 600)
#   make bench                 measure toa's cost in a VM (docs/performance.md)
#   make run                   the end-to-end demo in a VM (Debian's stock kernel)
#   make run TOA_ARCH=arm64    ... on Debian's stock arm64 kernel (qemu-system-aarch64),
#                              the package installed by apt and built by DKMS there
#   make check-latest          the package on the newest kernels trixie-backports and
#                              sid offer today (unpinned; not part of make check)
#   make arm64-smoke           toa.ko cross-built for Debian's stock arm64 kernel,
#                              loaded with each hook mechanism under qemu-system-aarch64
#   make arm64-suite           the VM suite (the cases its busybox guest serves) on that
#                              kernel, with each hook mechanism arm64 has
#   make arm64-stock           the .deb in an arm64 trixie root: apt, DKMS in the guest,
#                              the suite and the FULLNAT test on the stock arm64 kernel
#   make fmt / fmt-check       rustfmt the module's Rust

KDIR ?= /lib/modules/$(shell uname -r)/build
TOA := $(CURDIR)
# Where scripts/rust-meta.sh keeps kernel trees it completes with Rust
# metadata (default ~/.cache/toa-kbuild; DKMS: /var/cache/toa-dkms).
export TOA_META_CACHE

# Kbuild for toa against KDIR: in the tree that carries KDIR's Rust metadata
# (KDIR itself, or a private one: scripts/rust-meta.sh), with the compilers
# that built the kernel (scripts/kbuild-env.sh). Both refuse with what to
# install when something is missing.
kbuild = tree=$$($(TOA)/scripts/rust-meta.sh "$(KDIR)") && env=$$($(TOA)/scripts/kbuild-env.sh "$$tree") || exit 1; \
	$(MAKE) -C "$$tree" M="$(TOA)" $$env

.PHONY: all modules clean install uninstall dkms-src dkms-install dkms-uninstall deb run check check-latest bench fuzz fmt fmt-check arm64-smoke arm64-suite arm64-stock

all: modules

modules:
	+@$(kbuild) modules

clean:
	+$(MAKE) -C "$(KDIR)" M="$(TOA)" clean

# The kernel release KDIR was built for.
krelease = $$(sed -n 's/^\#define UTS_RELEASE "\(.*\)"/\1/p' "$(KDIR)/include/generated/utsrelease.h")

install: modules
	+@$(kbuild) INSTALL_MOD_DIR=updates modules_install
	depmod $(if $(INSTALL_MOD_PATH),-b "$(INSTALL_MOD_PATH)") -a $(krelease)

uninstall:
	rm -f "$(INSTALL_MOD_PATH)/lib/modules/$(krelease)/updates/toa.ko"*
	depmod $(if $(INSTALL_MOD_PATH),-b "$(INSTALL_MOD_PATH)") -a $(krelease)

# DKMS. DKMS_SRC is where the module's sources are staged (DKMS's source
# tree); DKMS_FLAGS passes e.g. --dkmstree/--installtree for a private tree.
TOA_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' $(TOA)/dkms.conf 2>/dev/null)
DKMS_SRC ?= /usr/src
DKMS_FLAGS ?=
# What DKMS builds from (also the toa-dkms package's /usr/src/toa-<version>).
DKMS_FILES := Kbuild Makefile dkms.conf include/uapi/linux/toa.h \
	$(patsubst $(TOA)/%,%,$(wildcard $(TOA)/src/*.rs $(TOA)/src/*/*.rs $(TOA)/src/*/*.c $(TOA)/src/*/*.h)) \
	scripts/kbuild-env.sh scripts/rust-meta.sh scripts/rust-meta.mk
dkms-src:
	rm -rf "$(DKMS_SRC)/toa-$(TOA_VERSION)" && mkdir -p "$(DKMS_SRC)/toa-$(TOA_VERSION)"
	cd "$(TOA)" && tar cf - $(DKMS_FILES) | tar xf - --no-same-owner -C "$(abspath $(DKMS_SRC))/toa-$(TOA_VERSION)"

dkms-install: dkms-src
	dkms add $(DKMS_FLAGS) --sourcetree "$(DKMS_SRC)" toa/$(TOA_VERSION)
	dkms install $(DKMS_FLAGS) --sourcetree "$(DKMS_SRC)" toa/$(TOA_VERSION) -k $(krelease) --kernelsourcedir "$(KDIR)"

dkms-uninstall:
	dkms remove $(DKMS_FLAGS) --sourcetree "$(DKMS_SRC)" toa/$(TOA_VERSION) --all
	rm -rf /var/cache/toa-dkms

# The Debian package, built by dpkg-buildpackage from debian/.
deb:
	@$(TOA)/scripts/deb.sh

# The end-to-end demo (FULLNAT topology, nginx and Python) in a VM: Debian's
# stock kernel with the packaged module (TOA_KERNEL=7.3: a self-built one).
run:
	@$(TOA)/scripts/demo.sh

check:
	$(TOA)/scripts/check.sh

# The newest Rust-enabled kernels Debian offers on the day (unpinned): the
# package installed with apt, DKMS, the suites (scripts/check-latest.sh).
check-latest:
	$(TOA)/scripts/bootstrap.sh
	$(TOA)/scripts/check-latest.sh

bench:
	$(TOA)/scripts/bench.sh

# Debian's stock arm64 kernel (trixie-backports), booted under QEMU (TCG)
# with toa.ko cross-built for it (scripts/arm64-kernel.sh, arm64-boot.sh).
arm64-smoke:
	$(TOA)/scripts/bootstrap.sh --run
	$(TOA)/scripts/arm64-boot.sh "$${TOA_CACHE:-$$HOME/.cache/toa}/results/arm64-smoke"

# The VM suite's cases the busybox guest serves, on the same arm64 kernel,
# under each hook mechanism arm64 has (scripts/arm64-suite.sh).
arm64-suite:
	$(TOA)/scripts/bootstrap.sh --run
	$(TOA)/scripts/arm64-suite.sh "$${TOA_CACHE:-$$HOME/.cache/toa}/results/arm64-suite"

# The package on the stock arm64 kernel, as an arm64 server gets it
# (scripts/arm64-stock-test.sh; arm64-root.sh makes the root).
arm64-stock:
	$(TOA)/scripts/bootstrap.sh --run
	$(TOA)/scripts/arm64-stock-test.sh

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
