# The project's commands. `make run` and `make test` are all a new user needs (see README.md).
#   make run [STAGE=N]         build every stage in release and run stage N's default demo (default: the newest)
#   make test                  every test, every stage (release build with -enable-testing, in .build/testing)
#   make test-debug            the same in a debug build: slower, with Swift's run-time exclusivity checks on
#   make bench [STAGE=N]       stage N's benchmark, in release
#   make gradcheck [STAGE=N]   stage N's golden gradient checks as a table
#   make plots                 redraw every reference picture committed under Plots/ (a run writes to Plots/runs/)
#   make diff FROM=N TO=M      what stage M adds to stage N (STAT=1: only the --stat summary)
#   make docs                  run every command the READMEs and chapters show and compare what it prints
#                              (.ci/doccheck.py; CI=true also runs the long ones); make docs-fix rewrites what differs
#   make format / make lint    swift-format over the sources (lint fails on any difference)
#   make mutants [ONLY=id,id]  plant each single-line bug of .ci/mutants.py in a scratch copy and check that the
#                              tests kill it (ends with "K of N mutations killed"; not part of CI)

STAGE_DIRS := $(sort $(wildcard Stages/[0-9]*-*))
STAGE_NUMBERS := $(sort $(foreach d,$(STAGE_DIRS),$(firstword $(subst -, ,$(notdir $(d))))))
STAGE ?= $(lastword $(STAGE_NUMBERS))
SOURCES := Package.swift Stages Shared Tests

.PHONY: deps build run test test-debug bench gradcheck plots diff docs docs-fix format lint mutants

deps:
	@bash .ci/deps

build: deps
	swift build -c release

run: build
	.build/release/stage$(STAGE)

# The tests run in release: a debug build is 10-90x slower, and the end-to-end runs dominate. -enable-testing lets
# the test targets see internal declarations (@testable import); its own scratch path keeps those objects apart from
# `make build`'s, so that switching between the two never recompiles everything.
TEST_BUILD := -c release -Xswiftc -enable-testing --scratch-path .build/testing

test: deps
	swift format lint --strict --recursive $(SOURCES)
	swift test $(TEST_BUILD) --disable-xctest

test-debug: deps
	swift test --disable-xctest

bench: build
	@python3 -c "import micrograd" 2>/dev/null || python3 -m pip install --quiet micrograd==0.1.0 2>/dev/null || true
	.build/release/stage$(STAGE) bench

gradcheck: build
	.build/release/stage$(STAGE) gradcheck

# The graph pictures committed under Plots/ (the chapters show some of them), as STAGE:EXAMPLE.
GRAPHS := 1:neuron 1:micrograd 2:layer 2:mlp 4:block 4:attention

# Every command writes to Plots/N-slug explicitly: without --plot-dir they write to the ignored Plots/runs/.
plots: build
	@for dir in $(STAGE_DIRS); do \
	  n=$$(basename $$dir | cut -d- -f1); out=Plots/$$(basename $$dir); \
	  echo "== stage$$n --plot-dir $$out"; .build/release/stage$$n --plot-dir $$out || exit 1; \
	done
	@echo "== stage3 compare --plot-dir Plots/3-layers-optimizers"
	@.build/release/stage3 compare --plot-dir Plots/3-layers-optimizers
	@echo "== stage5 mlm --plot-dir Plots/5-pretraining"
	@.build/release/stage5 mlm --plot-dir Plots/5-pretraining
	@for graph in $(GRAPHS); do \
	  n=$${graph%%:*}; example=$${graph#*:}; out=Plots/$$(basename $$(ls -d Stages/$$n-*)); \
	  echo "== stage$$n graph --example $$example --plot-dir $$out"; \
	  .build/release/stage$$n graph --example $$example --plot-dir $$out || exit 1; \
	done

diff:
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make diff FROM=1 TO=2" >&2; exit 2; }
	@from=$$(ls -d Stages/$(FROM)-* 2>/dev/null); to=$$(ls -d Stages/$(TO)-* 2>/dev/null); \
	  test -n "$$from" || { echo "no stage $(FROM) under Stages/" >&2; exit 2; }; \
	  test -n "$$to" || { echo "no stage $(TO) under Stages/ yet" >&2; exit 2; }; \
	  git --no-pager diff --no-index --stat "$$from" "$$to"; \
	  test -n "$(STAT)" || git diff --no-index "$$from" "$$to" || true

docs: build
	python3 .ci/test_doccheck.py
	python3 .ci/doccheck.py

docs-fix: build
	python3 .ci/doccheck.py --fix

format:
	swift format format --in-place --recursive $(SOURCES)

lint:
	swift format lint --strict --recursive $(SOURCES)

mutants: deps
	@python3 .ci/mutants.py $(if $(ONLY),--only $(ONLY))
