"""The import graph (tests/import_graph.py, read with `ast`): no cycles, and a function-level import only
where it keeps a heavy package (torch, transformers, textual, numpy, ...) out of its module's import, with
its reason beside it."""

from __future__ import annotations

from import_graph import HEAVY, all_imports, cycles, deferred, heavy_loads, modules


def test_the_graph_sees_every_package_and_its_function_level_imports():
    # GIVEN the parsed graph  THEN it knows modules of all three folders and the lazy torch of the engine
    every = all_imports()
    names = modules()
    assert {"tokstep.tui.cli.main", "tokstep.engine.model.trace", "tokstep.tui.widgets.status_bar"} <= set(names)
    assert any(i.in_function and "torch" in heavy_loads(every).get(i.target, ()) for i in every)


def test_tokstep_imports_no_cycle():
    assert cycles(all_imports()) == []


def test_the_cycle_check_would_notice_a_cycle():
    from import_graph import Import

    made = [
        Import("tokstep.tui.cli.report", "tokstep.tui.cli.share", 1, True, False, True),
        Import("tokstep.tui.cli.share", "tokstep.tui.cli.report", 1, False, False, False),
    ]
    assert cycles(made) == [["tokstep.tui.cli.report", "tokstep.tui.cli.share"]]


def test_a_function_level_import_defers_a_heavy_package_and_says_so():
    every = all_imports()
    heavy = heavy_loads(every)
    pointless = [f"{i.source}:{i.line} {i.target}" for i in every if i.in_function and not deferred(i, heavy)]
    unexplained = [f"{i.source}:{i.line} {i.target}" for i in every if i.in_function and not i.commented]
    assert pointless == [], "import these at the top of the module: they load nothing heavy it does not"
    assert unexplained == [], "say why beside a function-level import (`# lazy: loads torch`)"


def test_the_engine_result_types_load_no_torch():
    heavy = heavy_loads(all_imports())
    for name in ("tokstep.engine.model.results", "tokstep.engine.inputs.sample", "tokstep.engine.chat.turns"):
        assert "torch" not in heavy[name], name
    assert "torch" in heavy["tokstep.engine.model.trace"] and "torch" in HEAVY
