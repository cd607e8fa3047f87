#!/usr/bin/env bash
# Mutation score of the unit tests (issue 18): mutmut mutates lib/kiln/{render,fingerprint,redact}.py
# and the packages lib/kiln/registry/ and lib/kiln/guard/ one change at a time and runs the tests/unit tests that
# reach each change; a mutant the tests do not fail on "survived". Prints mutants, killed, survived
# and score per module (a package counts as one).
# By hand only, not CI, and slow: 3,567 mutants (2,062 of them in the guard). On one core of a
# shared 2-core machine, setup took 10 minutes and the first 1,000 mutants 10 more; reckon on one
# to two hours for all of them. --survivors re-checked 361 survivors in 18 minutes.
#
#   scripts/mutation.sh                 # all five modules, from scratch
#   scripts/mutation.sh render redact   # only these
#   scripts/mutation.sh --survivors     # after adding tests: re-check only what survived last time
#   SURVIVORS=1 scripts/mutation.sh     # and list the mutants that survived
#
# Afterwards, `cd .mutation && ../.venv/bin/mutmut show NAME` prints one mutant's diff.
set -euo pipefail
cd "$(dirname "$0")/.."

stage=.mutation
rerun=false
if [ "${1:-}" = "--survivors" ]; then
  rerun=true
  shift
fi
all_modules=(render fingerprint registry guard redact)
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=("${all_modules[@]}")
# What mutmut mutates for a module name, under src/: the module's file, or every file of its package.
sources() {
  if [ -d "lib/kiln/$1" ]; then echo "src/kiln/$1/*.py"; else echo "src/kiln/$1.py"; fi
}
for module in "${modules[@]}"; do
  [ -f "lib/kiln/$module.py" ] || [ -f "lib/kiln/$module/__init__.py" ] ||
    { echo "no module lib/kiln/$module.py or package lib/kiln/$module/" >&2; exit 2; }
  # mutmut leaves one FILE.py.meta per mutated file: any of them means an earlier run.
  if $rerun && ! compgen -G "$stage/mutants/$(sources "$module").meta" >/dev/null; then
    echo "no earlier run of $module in $stage/: run scripts/mutation.sh $module first" >&2
    exit 2
  fi
done

if ! .venv/bin/python -c 'import mutmut' 2>/dev/null; then
  echo "==> pip install -e '.[mutation]'"
  .venv/bin/pip install -q -e '.[mutation]'
fi

# The repository as the unit tests see it (they find tasks.py, roles/, templates/ and
# tests/golden/ at REPO = parents[2]), without the integration tests.
copy_tests() {
  rm -rf "$stage/mutants/tests"
  cp -a tests "$stage/mutants/"
  rm -rf "$stage/mutants/tests/integration"
  find "$stage/mutants" -name __pycache__ -prune -exec rm -rf {} +
}

if $rerun; then
  # New tests only add ways to fail, so a killed mutant stays killed: re-run the survivors,
  # and the mutants no test reached before.
  mapfile -t names < <(.venv/bin/python scripts/mutation_score.py --names "$stage" "${modules[@]}")
  if [ ${#names[@]} -eq 0 ]; then
    echo "no survivors to re-check"
    .venv/bin/python scripts/mutation_score.py "$stage" "${modules[@]}"
    exit 0
  fi
  copy_tests
else
  # mutmut knows only the ./, src/ and source/ layouts: it drops a leading "src." from module
  # names and puts mutants/src first on sys.path. So it runs in a scratch copy, .mutation/, where
  # src links to lib/ and mutants/src to mutants/lib: kiln imports from the mutated copy, whose
  # files still sit at lib/kiln/ under the copy's root, as the unit tests and golden files expect.
  names=()
  rm -rf "$stage"
  mkdir -p "$stage/mutants/lib/kiln"
  ln -s ../lib "$stage/src"
  ln -s lib "$stage/mutants/src"
  cp -a lib/kiln/templates lib/kiln/molecule_shared "$stage/mutants/lib/kiln/"
  cp -a tasks.py README.md roles templates molecule packer "$stage/mutants/"
  copy_tests
  only_mutate=""
  for module in "${modules[@]}"; do
    only_mutate+="\"$(sources "$module")\", "
  done
  # forkserver: each pytest run starts from a process that has run no test. Forked straight from
  # mutmut's own process, the tests would see what its earlier runs left (invoke pops a task's
  # argument help the first time it is read, so test_cli fails the second time).
  {
    cat pyproject.toml
    cat <<TOML

[tool.mutmut]
source_paths = ["src"]
only_mutate = [${only_mutate%, }]
pytest_add_cli_args_test_selection = ["tests/unit"]
pytest_add_cli_args = ["-p", "no:cacheprovider"]
process_isolation = "forkserver"
TOML
  } >"$stage/pyproject.toml"
fi

# Subprocesses the tests start (python -m invoke, kiln) import the editable install, unmutated:
# mutmut's trampolines work only inside its own processes.
start=$(date +%s)
what="every mutant"
$rerun && what="${#names[@]} survivors"
echo "==> mutmut run of $what, one worker, in $stage/ (log: $stage/mutmut.log)"
if ! (cd "$stage" && ../.venv/bin/mutmut run --max-children 1 "${names[@]}") >"$stage/mutmut.log" 2>&1; then
  tail -n 40 "$stage/mutmut.log" >&2
  exit 1
fi
echo "==> $(($(date +%s) - start)) s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/python scripts/mutation_score.py "$stage" "${modules[@]}"
