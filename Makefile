# Lessons and their checks; the work is done by the runner in internal/kata.
# DAY=48 limits a target to one day (default: every day); RUN=Pattern limits
# make test to the matching tests; TASK=N names a task for watch, hint and
# solution.
DAY ?=
RUN ?=
TASK ?=
KATA = go run ./internal/kata
# The race detector needs cgo, and so a C compiler; without one, test without it.
RACE = $(if $(filter 1,$(shell go env CGO_ENABLED)),-race)

.DEFAULT_GOAL := help
.PHONY: help check solutions stubs antipatterns mutants demo progress watch hint solution test proto lint bench grpcurl abuse load

help: ## list the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z]+:.*## / { printf "  make %-13s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

check: ## the whole integrity check, as CI runs it
	$(KATA) check $(DAY)

solutions: ## run every test against the hidden reference solutions
	$(KATA) solutions $(DAY)

stubs: ## check that the untouched stubs compile and every test fails
	$(KATA) stubs $(DAY)

antipatterns: ## check that each common mistake is caught by its named tests
	$(KATA) antipatterns $(DAY)

mutants: ## run the tests against every systematic mutant of the reference (check runs a sample)
	$(KATA) mutants $(DAY)

demo: ## run the reference demo once (each day in turn without DAY)
	$(KATA) demo $(DAY) -- -once

progress: ## show which tasks your own code passes
	$(KATA) progress $(DAY)

# watch runs the built runner rather than go run, so that Ctrl+C, which
# ends it cleanly, is not reported as a failure by the go command.
watch: ## re-run your current task on every save: make watch [DAY=48] [TASK=2]
	@go build -o .bin/kata ./internal/kata && exec .bin/kata watch $(DAY) $(if $(TASK),-task $(TASK))

hint: ## the hints for a task's failure: make hint DAY=48 TASK=2
	@$(if $(and $(DAY),$(TASK)),,$(error DAY and TASK are required: make hint DAY=48 TASK=2))$(KATA) hint $(DAY) -task $(TASK)

solution: ## the reference code of a task, once yours passes it: make solution DAY=48 TASK=1
	@$(if $(and $(DAY),$(TASK)),,$(error DAY and TASK are required: make solution DAY=48 TASK=1))$(KATA) solution $(DAY) -task $(TASK)

test: ## run your own code for one day: make test DAY=48 [RUN=TestFileUpload]
	$(if $(DAY),,$(error DAY is required: make test DAY=48 [RUN=TestName]))go test $(RACE) -count=1 -timeout=60s $(if $(RUN),-run '$(value RUN)') ./day$(DAY)_*/

proto: ## lint proto/ and regenerate pb/ with the pinned buf
	$(KATA) proto

lint: ## gofmt, go vet, buf lint and a check that pb/ is up to date
	$(KATA) lint

bench: ## run the benchmarks against the reference solutions
	$(KATA) bench $(DAY)

grpcurl: ## build the pinned grpcurl into .bin/grpcurl, for the lesson READMEs
	$(KATA) grpcurl -build

abuse: ## attack the reference servers over TCP (127.0.0.1): quotas, limits, bad input
	$(KATA) abuse $(DAY)

load: ## a short ghz load on the reference servers (127.0.0.1), failing on any call not OK
	$(KATA) load $(DAY)
