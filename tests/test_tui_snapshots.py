"""SVG snapshots of the stepper on the bundled tokstep-mini and its question + answer demo, at fixed sizes.

The screens show PINNED numbers (`tests/pinned_demo.py`, `tests/data/demo_trace.json`), never freshly computed
ones: the last digit of a float32 sum differs between CPUs and thread counts, and a snapshot must not. The
pinned numbers are checked against a fresh trace with a tolerance below. The result is served to the app
through `PrecomputedBackend`, so the screens do not depend on load timing. Regenerate after a deliberate
change with `pytest tests/test_tui_snapshots.py --snapshot-update` and look at the report before committing.
"""

from __future__ import annotations

import numpy as np
import pytest
from pinned_demo import demo, fresh_result, pinned_result
from tolerant import assert_same_ranking

from tokstep.tui.screens.app import EngineBackend, PrecomputedBackend, TokstepApp
from tokstep.tui.screens.stepper import StepperScreen


@pytest.fixture(scope="module")
def demo_result():
    _, spec = demo()
    result = pinned_result()
    return spec, result, EngineBackend().lint(result, spec)


def test_pinned_demo_trace_matches_a_fresh_trace(demo_result):
    """The pinned numbers are the model's, to a tolerance no CPU or thread count exceeds."""
    pinned, fresh = demo_result[1], fresh_result()
    a, b = pinned.trace, fresh.trace
    assert len(a) == len(b) and a.path == b.path
    np.testing.assert_array_equal(a.target_ids, b.target_ids)
    np.testing.assert_array_equal(a.supervised, b.supervised)
    np.testing.assert_allclose(a.logprob, b.logprob, atol=1e-4)
    np.testing.assert_allclose(a.entropy, b.entropy, atol=1e-4)
    np.testing.assert_allclose(a.topk_logprobs, b.topk_logprobs, atol=1e-4)
    assert pinned.reference == pytest.approx(fresh.reference, rel=1e-5)
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    assert_same_ranking(a, b)  # ids and ranks agree except across near-ties (tests/tolerant.py)


def app_for(demo_result) -> TokstepApp:
    spec, result, findings = demo_result
    return TokstepApp(sample_spec=spec, backend=PrecomputedBackend(result, findings))


async def stepper_shown(pilot) -> None:
    while not isinstance(pilot.app.screen, StepperScreen):
        await pilot.pause(0.02)
    await pilot.pause()


def test_demo_at_80x24_mid_answer(snap_compare, demo_result):
    assert snap_compare(
        app_for(demo_result), press=["right"] * 12, terminal_size=(80, 24), run_before=stepper_shown
    )


def test_demo_at_120x40_last_position_matches_hf(snap_compare, demo_result):
    assert snap_compare(
        app_for(demo_result), press=["end"], terminal_size=(120, 40), run_before=stepper_shown
    )


def test_demo_heatmap_and_raw_pieces_at_100x30(snap_compare, demo_result):
    keys = ["pagedown", "c", "r"]
    assert snap_compare(app_for(demo_result), press=keys, terminal_size=(100, 30), run_before=stepper_shown)


def test_help_screen_at_80x24(snap_compare, demo_result):
    assert snap_compare(
        app_for(demo_result), press=["question_mark"], terminal_size=(80, 24), run_before=stepper_shown
    )
