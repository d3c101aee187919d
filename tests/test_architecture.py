"""The house's rules, read from the imports by scripts/architecture.py: no cycle between units, no
import that climbs a floor or the web apps' order, no import of project code inside a function
without a reason (deferring torch, waiting for Django's app registry, or still on the shrinking
allow-list), no module over 450 lines that is not on its shrinking allow-list. The checks
themselves are tested on small made-up trees, so each one can fail."""
import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def architecture():
    spec = importlib.util.spec_from_file_location("architecture", REPO / "scripts" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["architecture"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def house(architecture):
    return architecture.read_house()


def test_no_cycle_between_units(house):
    assert house["cycles"] == []


def test_no_import_climbs_a_floor_or_the_web_apps_order(house):
    assert house["climbing"] == []
    assert house["unlisted_apps"] == []


def test_imports_inside_functions_have_a_reason(house):
    assert house["unjustified_imports"] == []


def test_long_modules_are_on_the_allow_list_and_the_list_has_no_stale_entry(architecture, house):
    assert house["long_modules_not_allowed"] == []
    still_long = {where for where, _ in house["long_modules"]}
    assert set(architecture.LONG_MODULES_NOT_YET_SPLIT) <= still_long, "a split module is still on the allow-list"


def test_pending_inline_imports_has_no_stale_entry(architecture, house):
    present = {f"{site.split(':')[0]} {site.split(' ')[1]}" for site in house["imports_in_functions"]}
    assert architecture.PENDING_INLINE_IMPORTS <= present, "a moved import is still on the allow-list"


def test_the_script_reports_no_failure(architecture, house):
    assert architecture.failures(house) == []


# --- each check can fail: the same functions on made-up edges


def test_a_cycle_is_found(architecture):
    edges = {("webapp.core", "webapp.jobs"): ["a.py:1"], ("webapp.jobs", "webapp.core"): ["b.py:2"]}
    assert architecture.cycles(edges) == [["webapp.core", "webapp.jobs"]]


def test_climbing_a_floor_and_climbing_the_app_order_are_both_found(architecture):
    edges = {("generation", "training"): ["generation/x.py:3"],
             ("webapp.core", "webapp.checkpoints"): ["webapp/core/y.py:4"],
             ("webapp.annotation", "webapp.checkpoints"): ["webapp/annotation/z.py:5"],
             ("webapp.core", "webapp"): ["webapp/core/w.py:6"]}
    found = architecture.climbing(edges)
    assert found == ["generation -> training at generation/x.py:3",
                     "webapp.core -> webapp at webapp/core/w.py:6",
                     "webapp.core -> webapp.checkpoints at webapp/core/y.py:4"]


def test_an_app_missing_from_the_order_ranks_above_every_listed_one(architecture):
    assert architecture.rank("webapp.newapp") > architecture.rank("webapp.site")
    assert architecture.climbing({("webapp.site", "webapp.newapp"): ["s.py:1"]}) != []


def test_deferral_reasons(architecture):
    heavy = {"generation.checkpoint": frozenset({"torch", "safetensors"}),
             "training.trainer": frozenset({"torch", "safetensors"}), "training.rl.evaluation": frozenset({"torch"})}
    reason = architecture.deferral_reason
    assert reason("webapp/core/health.py", "generation.checkpoint", "check", heavy) == "defers safetensors, torch"
    # a module that loads those libraries itself gains nothing by deferring; one that loads fewer does
    assert reason("training/trainer.py", "generation.checkpoint", "save", heavy) is None
    assert reason("training/rl/evaluation.py", "generation.checkpoint", "load", heavy) == "defers safetensors"
    assert "app registry" in reason("webapp/core/apps.py", "webapp.core.health", "ready", heavy)
    assert reason("webapp/core/views.py", "webapp.core.health", "status_page", heavy) is None


def test_failures_name_each_broken_rule(architecture):
    house = {"cycles": [["a", "b"]], "climbing": ["x -> y at z"], "unlisted_apps": ["newapp"],
             "unjustified_imports": ["webapp/core/views.py:3 webapp.core.health"],
             "long_modules_not_allowed": [("webapp/core/big.py", 451)]}
    assert len(architecture.failures(house)) == 5


def test_tests_are_laid_out_by_floor(architecture):
    """tests/<floor>/ for kernels, generation and training; tests/webapp/<app>/ for each web app;
    tests/browser/ for tests that drive Chromium; only this file stays at the top."""
    allowed = {Path("kernels"), Path("generation"), Path("training"), Path("browser")}
    allowed |= {Path("webapp") / app for app in architecture.WEBAPP_APPS}
    tests = REPO / "tests"
    misplaced = [str(p.relative_to(tests)) for p in tests.rglob("test_*.py")
                 if p.parent.relative_to(tests) not in allowed and p != Path(__file__).resolve()]
    assert not misplaced, f"tests outside a floor folder: {misplaced}"
    browser_elsewhere = [str(p.relative_to(tests)) for p in tests.rglob("test_*.py")
                         if "new_page(" in p.read_text() and p.parent.name != "browser" and p != Path(__file__).resolve()]
    assert not browser_elsewhere, f"browser tests outside tests/browser: {browser_elsewhere}"


def test_a_module_that_builds_a_prompt_and_samples_is_a_greeting_path(architecture, tmp_path):
    writer, caller = tmp_path / "writer.py", tmp_path / "caller.py"
    writer.write_text("def f(b, q, p):\n    return b.stream(b.greeting_prompt(q), p)\n")
    caller.write_text("def g(b, q):\n    b.greeting_prompt(q)\n    return write_greetings(b, q, 3)\n")
    assert architecture.greeting_sites(writer) == (["2 greeting_prompt", "2 stream"], [])
    assert architecture.greeting_sites(caller) == ([], [(3, "write_greetings")])
