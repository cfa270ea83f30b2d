# Coverage-guided fuzzing of the codecs (fuzz/, cargo-fuzz + libFuzzer, see fuzz/README.md).
#   make test-fuzz                     every target for FUZZ_TIME seconds from its seeds
#   make fuzz                          every target for FUZZ_RUNS executions (long run)
#   make fuzz FUZZ_TARGET=ffi_payload  one target
# New inputs go to a temporary directory (test-fuzz) or to fuzz/corpus/ (fuzz, not committed),
# never into the committed seeds; a crashing input is written to fuzz/artifacts/<target>/.

FUZZ_TARGETS := engine_packet polling_payload socketio_packet ffi_payload
FUZZ_TARGET ?= $(FUZZ_TARGETS)
FUZZ_TIME ?= 15
FUZZ_RUNS ?= 10000000
# libFuzzer's instrumentation needs unstable rustc flags; RUSTC_BOOTSTRAP lets the
# stable toolchain accept them.
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz

.PHONY: fuzz-setup test-fuzz fuzz

fuzz-setup:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked

test-fuzz: fuzz-setup
	cd fuzz && $(FUZZ) build
	@cd fuzz && work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT && \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p "$$work/$$t"; \
	  if $(FUZZ) run $$t "$$work/$$t" seeds/$$t -- -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	      >"$$work/$$t.log" 2>&1; then \
	    echo "$$t: $$(grep -E '^#[0-9]+[[:space:]]+DONE' "$$work/$$t.log")"; \
	  else \
	    tail -n 60 "$$work/$$t.log"; echo "fuzz target $$t failed" >&2; exit 1; \
	  fi; \
	done

fuzz: fuzz-setup
	@cd fuzz && for t in $(FUZZ_TARGET); do \
	  mkdir -p corpus/$$t && \
	  $(FUZZ) run $$t corpus/$$t seeds/$$t -- -runs=$(FUZZ_RUNS) -print_final_stats=1 || exit 1; \
	done
