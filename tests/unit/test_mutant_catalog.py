"""Every deliberate bug of tests/mutants still fits the code it names: its file exists and its
patch applies (the function is there, the old text in it exactly once). A move that leaves a
mutant behind fails here, in the unit suite, long before `tox -e mutants` runs it."""

from __future__ import annotations

import pytest

from tests.mutants.catalog import MUTANTS, Mutant
from tests.mutants.run import REPO, patched


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_mutant_fits_the_code(mutant: Mutant) -> None:
    path = REPO / mutant.file
    assert path.is_file(), f"{mutant.name}: {mutant.file} does not exist"
    assert patched(path.read_text(), mutant) != path.read_text()


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_the_guarding_tests_exist(mutant: Mutant) -> None:
    for test in mutant.tests:
        file = test.split("::", 1)[0]
        assert (REPO / file).is_file(), f"{mutant.name}: {file} does not exist"
