# The two commands of the README. Both do all set-up on a fresh machine.
.PHONY: demo test bench

demo:
	bash deploy/dev/setup.sh python
	.venv/bin/fjordgate demo

test:
	bash deploy/dev/test.sh

bench:
	bash deploy/dev/setup.sh services
	bash bench/run
