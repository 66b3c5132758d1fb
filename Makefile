# Top-level Makefile: forwards every target to the Makefile that configure wrote into the
# build directory (as nginx does), so the usual commands work from the top of the tree:
#
#     ./configure && make -j2 && make test && make install
#
# Another build directory (./configure --builddir=DIR) is chosen with BUILDDIR:
#
#     ./configure --with-sanitizers --builddir=objs-san
#     make -j2 BUILDDIR=objs-san test
#
# Targets: default (objs/baton), all, test, install, clean, bench; any other target (for
# instance objs/baton_unit) is forwarded as it is.

BUILDDIR = objs

# the goals are forwarded one by one; parallelism happens inside the build directory's make
.NOTPARALLEL:

.PHONY: default all baton test install clean bench FORCE

default all baton test install clean bench:
	@test -f $(BUILDDIR)/Makefile || { echo "$(BUILDDIR)/Makefile not found: run ./configure first" >&2; exit 1; }
	@$(MAKE) --no-print-directory -f $(BUILDDIR)/Makefile $@

# files in the build directory (make objs/baton_unit) are always passed on: only the build
# directory's Makefile knows whether they are up to date
$(BUILDDIR)/%: FORCE
	@test -f $(BUILDDIR)/Makefile || { echo "$(BUILDDIR)/Makefile not found: run ./configure first" >&2; exit 1; }
	@$(MAKE) --no-print-directory -f $(BUILDDIR)/Makefile $@

.DEFAULT:
	@test -f $(BUILDDIR)/Makefile || { echo "$(BUILDDIR)/Makefile not found: run ./configure first" >&2; exit 1; }
	@$(MAKE) --no-print-directory -f $(BUILDDIR)/Makefile $@

Makefile: ;

FORCE:
