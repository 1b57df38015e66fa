# SPDX-License-Identifier: GPL-2.0
#
# Read after the kernel's top Makefile by scripts/rust-meta.sh, in a copy of
# a kernel's headers: one goal, toa-rust-meta, that builds only what an
# out-of-tree Rust module is compiled against (scripts/target.json where
# the architecture has one, and the rust/ directory: rust/*.rmeta,
# libmacros.so...), without the rest of `make prepare` (host tools, objtool,
# resolve_btfids, sign-file), which the headers already carry.
# scripts/target.json only where the architecture's Makefile compiles Rust
# for it (x86; arm64 names a built-in rustc target, and scripts/Makefile has
# no rule for it there).

PHONY += toa-rust-meta
toa-rust-meta:
	$(if $(shell grep -s scripts/target.json $(srctree)/arch/$(SRCARCH)/Makefile),$(Q)$(MAKE) $(build)=scripts scripts/target.json)
	$(Q)$(MAKE) $(build)=rust
